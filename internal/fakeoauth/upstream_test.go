package fakeoauth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newUpstream(t *testing.T, as *AuthServer, opts UpstreamOptions) *Upstream {
	t.Helper()
	opts.AuthServer = as
	up := NewUpstream(opts)
	ts := httptest.NewServer(up)
	t.Cleanup(ts.Close)
	t.Cleanup(up.ReleaseSSE) // before ts.Close, which waits for streams
	up.SetOrigin(ts.URL)
	return up
}

func call(t *testing.T, method, url, auth string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestUpstreamEchoWithValidToken(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	up := newUpstream(t, as, UpstreamOptions{})
	at := as.IssueAccessToken("c1", []string{"read"}, up.Resource())
	body := bytes.Repeat([]byte("x"), 1000)
	resp, b := call(t, http.MethodPut, up.URL()+"/echo", "Bearer "+at, body)
	var r echoReply
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	sum := sha256.Sum256(body)
	if r.Authorization != "Bearer "+at || r.Length != 1000 || r.SHA256 != hex.EncodeToString(sum[:]) || r.Method != "PUT" {
		t.Fatalf("echo %+v", r)
	}
	if up.LastAuthorizationFor("/echo") != "Bearer "+at || up.LastAuthorization() != "Bearer "+at {
		t.Fatal("last authorization")
	}
	// A token minted for another resource is refused (RFC 8707).
	other := as.IssueAccessToken("c1", nil, "https://elsewhere.example/")
	if resp, _ := call(t, http.MethodGet, up.URL()+"/echo", "Bearer "+other, nil); resp.StatusCode != 401 {
		t.Fatalf("foreign audience: %d", resp.StatusCode)
	}
	if n, u, f := up.Counts(); n != 2 || u != 1 || f != 0 {
		t.Fatalf("counts %d %d %d", n, u, f)
	}
}

func TestUpstreamChallengeStyles(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	for _, tc := range []struct {
		style, auth, want string
	}{
		{ChallengeMetadata, "Bearer bogus", `Bearer error="invalid_token", resource_metadata="{MD}"`},
		{ChallengeMetadata, "", `Bearer resource_metadata="{MD}"`},
		{ChallengeBearer, "Bearer bogus", `Bearer error="invalid_token"`},
		{ChallengeBare, "Bearer bogus", ``},
	} {
		up := newUpstream(t, as, UpstreamOptions{Challenge: tc.style})
		resp, b := call(t, http.MethodPost, up.URL()+"/mcp", tc.auth, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		want := strings.ReplaceAll(tc.want, "{MD}", up.URL()+"/.well-known/oauth-protected-resource/mcp")
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
			t.Errorf("%s %q: %d %q, want %q", tc.style, tc.auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
		if !bytes.Contains(b, []byte(`"jsonrpc":"2.0"`)) {
			t.Errorf("%s: body %s", tc.style, b)
		}
	}
}

func TestUpstreamInsufficientScope(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	up := newUpstream(t, as, UpstreamOptions{RequiredScopes: map[string][]string{"/echo": {"read"}, "/echo/admin": {"read", "admin"}}})
	at := as.IssueAccessToken("c1", []string{"read"}, "")
	if resp, _ := call(t, http.MethodGet, up.URL()+"/echo", "Bearer "+at, nil); resp.StatusCode != 200 {
		t.Fatalf("enough scope: %d", resp.StatusCode)
	}
	resp, b := call(t, http.MethodGet, up.URL()+"/echo/admin", "Bearer "+at, nil)
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 403 || !strings.HasPrefix(ch, `Bearer error="insufficient_scope", scope="read admin"`) || !bytes.Contains(b, []byte("insufficient_scope")) {
		t.Fatalf("403: %d %q %s", resp.StatusCode, ch, b)
	}
	if _, _, f := up.Counts(); f != 1 {
		t.Fatal("403 not counted")
	}
}

func TestUpstreamSlackErrors(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	up := newUpstream(t, as, UpstreamOptions{SlackErrors: true, RequiredScopes: map[string][]string{"/echo": {"chat:write", "read"}}})
	for _, tc := range []struct{ auth, want string }{
		{"Bearer bogus", `{"error":"token_expired","ok":false}`},
		{"", `{"error":"invalid_auth","ok":false}`},
		{"Bearer " + as.IssueAccessToken("c1", nil, ""), `{"error":"missing_scope","needed":"chat:write,read","ok":false}`},
	} {
		resp, b := call(t, http.MethodGet, up.URL()+"/echo", tc.auth, nil)
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != tc.want || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%q: %d %s", tc.auth, resp.StatusCode, b)
		}
	}
	if _, u, f := up.Counts(); u != 2 || f != 1 {
		t.Fatalf("counts %d %d", u, f)
	}
}

func TestUpstreamMetadata(t *testing.T) {
	as := newAS(t, AuthServerOptions{IssuerPath: "/t1"})
	up := newUpstream(t, as, UpstreamOptions{})
	status, _, m := getJSON(t, up.MetadataURL())
	if status != 200 || m["resource"] != up.Resource() || m["authorization_servers"].([]any)[0] != as.Issuer() {
		t.Fatalf("%d %v", status, m)
	}
	if status, _, _ := getJSON(t, up.URL()+"/.well-known/oauth-protected-resource"); status != 404 {
		t.Fatal("root document served without MetadataAtRoot")
	}
	up.AdvertiseIssuer("https://other.example")
	if _, _, m := getJSON(t, up.MetadataURL()); m["authorization_servers"].([]any)[0] != "https://other.example" {
		t.Fatalf("advertise: %v", m)
	}
	if up.MetadataFetches() != 3 {
		t.Fatalf("fetches %d", up.MetadataFetches())
	}

	root := newUpstream(t, as, UpstreamOptions{MetadataAtRoot: true, MetadataResource: "https://wrong.example/"})
	if root.MetadataURL() != root.URL()+"/.well-known/oauth-protected-resource" {
		t.Fatal(root.MetadataURL())
	}
	if status, _, m := getJSON(t, root.MetadataURL()); status != 200 || m["resource"] != "https://wrong.example/" {
		t.Fatalf("root: %d %v", status, m)
	}
	off := newUpstream(t, as, UpstreamOptions{DisableMetadata: true, ChallengeMetadataURL: "http://10.0.0.1/md"})
	if status, _, _ := getJSON(t, off.MetadataURL()); status != 404 {
		t.Fatal("disabled metadata served")
	}
	if resp, _ := call(t, http.MethodGet, off.URL()+"/echo", "Bearer x", nil); !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="http://10.0.0.1/md"`) {
		t.Fatal(resp.Header.Get("WWW-Authenticate"))
	}
}

func TestUpstreamJSONRPC(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	up := newUpstream(t, as, UpstreamOptions{})
	auth := "Bearer " + as.IssueAccessToken("c1", nil, "")
	resp, b := call(t, http.MethodPost, up.Resource(), auth, []byte(`{"jsonrpc":"2.0","id":"abc","method":"tools/list"}`))
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"id":"abc","jsonrpc":"2.0","result":{}}` {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if resp, _ := call(t, http.MethodPost, up.Resource(), auth, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); resp.StatusCode != 202 {
		t.Fatalf("notification: %d", resp.StatusCode)
	}
}

func TestUpstreamSSEWaitsForRelease(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	up := newUpstream(t, as, UpstreamOptions{SSETimeout: 10 * time.Second})
	req, _ := http.NewRequest(http.MethodGet, up.URL()+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+as.IssueAccessToken("c1", nil, ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	first := readEvent(t, r)
	if !strings.Contains(first, `data: {"n":1}`) || up.SSEWaiting() != 1 || up.SSEOpened() != 1 {
		t.Fatalf("first event %q, waiting %d", first, up.SSEWaiting())
	}
	start := time.Now()
	up.ReleaseSSE()
	rest, _ := io.ReadAll(r)
	if !strings.Contains(string(rest), `data: {"n":2}`) || time.Since(start) > 5*time.Second {
		t.Fatalf("rest %q", rest)
	}
}

func TestUpstreamSSETimeout(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	up := newUpstream(t, as, UpstreamOptions{SSETimeout: 50 * time.Millisecond})
	_, b := call(t, http.MethodGet, up.URL()+"/sse", "Bearer "+as.IssueAccessToken("c1", nil, ""), nil)
	if !strings.Contains(string(b), `{"n":2}`) {
		t.Fatalf("%s", b)
	}
}

func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var ev strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event: %v (%q)", err, ev.String())
		}
		if line == "\n" {
			return ev.String()
		}
		ev.WriteString(line)
	}
}

// Start* really listen, on loopback.
func TestStartServers(t *testing.T) {
	as, err := StartAuthServer(AuthServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	up, err := StartUpstream(UpstreamOptions{AuthServer: as})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if !strings.HasPrefix(as.URL(), "http://127.0.0.1:") || !strings.HasPrefix(up.Resource(), "http://127.0.0.1:") {
		t.Fatal(as.URL(), up.Resource())
	}
	as.AddClient("c1", "s1")
	at := postToken(t, as, tokenCall{form: cc("read", up.Resource()), basicID: "c1", basicSecret: "s1"}).str("access_token")
	if resp, _ := call(t, http.MethodGet, up.URL()+"/echo", "Bearer "+at, nil); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
}
