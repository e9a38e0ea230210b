package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// mcpUpstream is an MCP server (the Go SDK's streamable HTTP handler)
// protected by the fake authorization server's access tokens: its one
// tool, whoami, answers with the token's subject.
type mcpUpstream struct {
	srv *httptest.Server
}

func (u *mcpUpstream) Resource() string { return u.srv.URL + "/mcp" }
func (u *mcpUpstream) MetadataURL() string {
	return u.srv.URL + "/.well-known/oauth-protected-resource/mcp"
}

func startMCPUpstream(t *testing.T, as *fakeoauth.AuthServer) *mcpUpstream {
	t.Helper()
	mux := http.NewServeMux()
	u := &mcpUpstream{srv: httptest.NewServer(mux)}
	t.Cleanup(u.srv.Close)
	server := mcp.NewServer(&mcp.Implementation{Name: "whoami-upstream", Version: "v1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "names the user the token was issued to"},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			user := ""
			if req.Extra != nil && req.Extra.TokenInfo != nil {
				user = req.Extra.TokenInfo.UserID
			}
			if user == "" {
				return nil, nil, errors.New("no user on the request")
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "you are " + user}}}, nil, nil
		})
	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		scopes, ok := as.ValidateFor(token, u.Resource())
		if !ok {
			return nil, fmt.Errorf("%w: not a live token for %s", auth.ErrInvalidToken, u.Resource())
		}
		return &auth.TokenInfo{Scopes: scopes, UserID: as.SubjectOf(token), Expiration: time.Now().Add(time.Hour)}, nil
	}
	mux.Handle("/mcp", auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: u.MetadataURL()})(
		mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)))
	mux.HandleFunc("/.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"resource":                 u.Resource(),
			"authorization_servers":    []string{as.Issuer()},
			"bearer_methods_supported": []string{"header"},
		})
	})
	return u
}

// mcpSite is perUserSite in front of the MCP upstream, streaming.
func mcpSite(t *testing.T, up *mcpUpstream, extra ...string) string {
	return basicAuthBlock(t, "/mcp/.oauth/client.json") + fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:{PORT}/mcp/.oauth/callback
		principal      {http.auth.user.id}
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
%s
	}
	reverse_proxy %s {
		flush_interval -1
	}`, up.Resource(), indent(extra), strings.TrimPrefix(up.srv.URL, "http://"))
}

// basicAuthTransport sends every request as one basic_auth user.
type basicAuthTransport struct {
	user string
	base http.RoundTripper
}

func (b basicAuthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, password(b.user))
	return b.base.RoundTrip(r)
}

// Acceptance: a real MCP client (the Go SDK's) through the gateway gets
// -32042 with the URL before consent and calls tools after the user
// completed the URL.
func TestMCPClientThroughGateway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	up := startMCPUpstream(t, e.as)
	c := startCaddy(t, mcpSite(t, up, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	start := c.URL("/mcp/.oauth/start")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "gateway-test", Version: "v1"}, nil)
	transport := func() *mcp.StreamableClientTransport {
		return &mcp.StreamableClientTransport{
			Endpoint:   c.URL("/mcp"),
			HTTPClient: &http.Client{Transport: basicAuthTransport{"alice", http.DefaultTransport}},
			MaxRetries: -1,
		}
	}

	// Before consent: the SDK surfaces the JSON-RPC error; its message
	// names the start URL.
	cs, err := client.Connect(ctx, transport(), nil)
	if err == nil {
		cs.Close()
		t.Fatal("connected before consent")
	}
	t.Logf("before consent, Connect: %v", err)
	if !strings.Contains(err.Error(), start) {
		t.Fatalf("Connect error %q does not name %s", err, start)
	}
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != mcp.CodeURLElicitationRequired {
		t.Fatalf("Connect error %#v, want a JSON-RPC error %d", err, mcp.CodeURLElicitationRequired)
	}
	var data struct {
		Elicitations []struct {
			Mode          string `json:"mode"`
			ElicitationID string `json:"elicitationId"`
			URL           string `json:"url"`
		} `json:"elicitations"`
	}
	if json.Unmarshal(rpcErr.Data, &data) != nil || len(data.Elicitations) != 1 ||
		data.Elicitations[0].Mode != "url" || data.Elicitations[0].URL != start || data.Elicitations[0].ElicitationID == "" {
		t.Fatalf("error data %s", rpcErr.Data)
	}

	// The same over the wire: a raw initialize at revision 2025-11-25.
	rpc := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"v1"}}}`
	if answer, raw := postJSONRPC(t, c.URL("/mcp"), "alice", rpc); !answer.isURLElicitation(1, start) {
		t.Fatalf("raw initialize: %s", raw)
	}
	if n := e.as.TokenRequests(""); n != 0 {
		t.Fatalf("before consent: %d token requests", n)
	}

	// alice completes the URL.
	if resp, body := connect(t, start, "alice"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected") {
		t.Fatalf("alice's callback: %d %s", resp.StatusCode, body)
	}

	// Now the session comes up and the tool answers as alice.
	cs, err = client.Connect(ctx, transport(), nil)
	if err != nil {
		t.Fatalf("Connect after consent: %v", err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatalf("tools/call: %v", err)
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("tools/call result %+v", res)
	}
	text, ok := res.Content[0].(*mcp.TextContent)
	if !ok || text.Text != "you are alice" {
		t.Fatalf("whoami answered %#v", res.Content[0])
	}
	if err := cs.Close(); err != nil {
		t.Fatalf("closing the session: %v", err)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}
