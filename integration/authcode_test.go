package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 9: user-delegated authorization (authorization code + PKCE).

// perUserSite is a site body: basic_auth users, then oauth_gateway with
// one credential per user, then the upstream.
func (e *env) perUserSite(t *testing.T, extra ...string) string {
	return basicAuthBlock(t, "/mcp/.oauth/client.json") + fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:{PORT}/mcp/.oauth/callback
		principal      {http.auth.user.id}
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
%s
	}
	reverse_proxy %s`, e.up.Resource(), indent(extra), strings.TrimPrefix(e.up.URL(), "http://"))
}

// sharedAuthCodeSite is a site body with one shared authorization-code
// credential, which only an operator can connect.
func (e *env) sharedAuthCodeSite() string {
	return fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:{PORT}/mcp/.oauth/callback
		client_id      %s
		client_secret  {env.TEST_CLIENT_SECRET}
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
	}
	reverse_proxy %s`, e.up.Resource(), e.clientID, strings.TrimPrefix(e.up.URL(), "http://"))
}

func (e *env) confidentialClient() []string {
	return []string{"client_id " + e.clientID, "client_secret {env.TEST_CLIENT_SECRET}"}
}

func authorizationRequired(t *testing.T, status int, body []byte) string {
	t.Helper()
	var v struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		AuthorizationURL string `json:"authorization_url"`
	}
	if status != http.StatusUnauthorized || json.Unmarshal(body, &v) != nil || v.Error != "authorization_required" {
		t.Fatalf("status %d %s, want 401 authorization_required", status, body)
	}
	return v.AuthorizationURL
}

// Acceptance 4 and behaviour 1-3: before consent each kind of client gets
// its answer; after consent two users' 400 concurrent requests each carry
// their own user's token.
func TestAuthorizationCodePerUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	start := c.URL("/mcp/.oauth/start")

	// An API client: 401 JSON with the URL that starts a flow.
	resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil)
	if got := authorizationRequired(t, resp.StatusCode, []byte(body)); got != start {
		t.Fatalf("authorization_url %q, want %q", got, start)
	}
	// A browser: redirected into the flow, with the way back.
	resp, _ = step(t, http.MethodGet, c.URL("/echo?x=1"), "alice", nil, "Accept", "text/html,application/xhtml+xml")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != start+"?return_to="+url.QueryEscape("/echo?x=1") {
		t.Fatalf("browser: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An MCP client (2025-11-25): JSON-RPC -32042 with a URL elicitation.
	answer, raw := postJSONRPC(t, c.URL("/mcp"), "alice", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`)
	if !answer.isURLElicitation(7, start) || answer.Error.Data.Elicitations[0].ElicitationID == "" {
		t.Fatalf("MCP answer %s", raw)
	}
	if e.as.TokenRequests("") != 0 {
		t.Fatalf("before consent: %d token requests", e.as.TokenRequests(""))
	}

	// Both users connect; the browser flow lands back where it asked.
	resp, _ = step(t, http.MethodGet, start+"?return_to="+url.QueryEscape("/echo?x=1"), "alice", nil)
	back, _ := step(t, http.MethodGet, consent(t, resp.Header.Get("Location"), "alice"), "alice", nil)
	if back.StatusCode != http.StatusFound || back.Header.Get("Location") != "/echo?x=1" {
		t.Fatalf("callback: %d Location %q", back.StatusCode, back.Header.Get("Location"))
	}
	if resp, body := connect(t, start, "bob"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected") {
		t.Fatalf("bob's callback: %d %s", resp.StatusCode, body)
	}
	auths := e.as.Authorizations()
	if len(auths) != 2 || auths[0].Resource != e.up.Resource() || auths[0].RedirectURI != c.URL("/mcp/.oauth/callback") {
		t.Fatalf("authorizations %+v", auths)
	}

	// 200 concurrent requests per user, mixed GET and POST: every one
	// reaches the upstream with its own user's token.
	var wg sync.WaitGroup
	errs := make(chan string, 400)
	for i := 0; i < 200; i++ {
		for _, u := range users {
			wg.Add(1)
			go func(u string, i int) {
				defer wg.Done()
				method, form := http.MethodGet, url.Values(nil)
				if i%2 == 1 {
					method, form = http.MethodPost, url.Values{"n": {fmt.Sprint(i)}}
				}
				resp, body := step(t, method, c.URL("/echo"), u, form)
				var echo echoReply
				if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &echo) != nil || echo.Subject != u {
					errs <- fmt.Sprintf("%s %s: %d subject %q", u, method, resp.StatusCode, echo.Subject)
				}
			}(u, i)
		}
		if i == 100 {
			e.as.InvalidateAccessTokens() // refreshes mid-run, per user
		}
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if e.as.ReuseDetections() != 0 {
		t.Fatal("refresh token reused")
	}
	list := listCredentials(t, c)
	principals := map[string]bool{}
	for _, st := range list {
		principals[st.Principal] = true
	}
	if !principals["alice"] || !principals["bob"] {
		t.Fatalf("admin list %+v", list)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}

// Behaviour 3: a flow started by alice and completed by bob binds nothing;
// reused and expired states are refused.
func TestAuthorizationCodeStateIsBoundAndSingleUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.perUserSite(t, append(e.confidentialClient(), "authorization_state_ttl 1s")...), caddyOptions{Env: e.secretEnv()})
	start := c.URL("/mcp/.oauth/start")

	resp, _ := step(t, http.MethodGet, start, "alice", nil)
	callback := consent(t, resp.Header.Get("Location"), "alice")
	if resp, body := step(t, http.MethodGet, callback, "bob", nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "someone else") {
		t.Fatalf("bob completing alice's flow: %d %s", resp.StatusCode, body)
	}
	for _, u := range users {
		resp, body := step(t, http.MethodGet, c.URL("/echo"), u, nil)
		authorizationRequired(t, resp.StatusCode, []byte(body))
	}
	if e.as.TokenRequests("") != 0 {
		t.Fatal("the code was exchanged")
	}
	// The state was used (by bob's refused attempt): alice cannot reuse it.
	if resp, body := step(t, http.MethodGet, callback, "alice", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Fatalf("reused state: %d %s", resp.StatusCode, body)
	}
	// An expired state.
	resp, _ = step(t, http.MethodGet, start, "alice", nil)
	callback = consent(t, resp.Header.Get("Location"), "alice")
	time.Sleep(1500 * time.Millisecond)
	if resp, body := step(t, http.MethodGet, callback, "alice", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Fatalf("expired state: %d %s", resp.StatusCode, body)
	}
	// No user on the request: refused, never a shared credential.
	if status, body, _ := get(t, c.URL("/mcp/.oauth/client.json/../../echo")); status != http.StatusUnauthorized {
		t.Fatalf("no principal: %d %s", status, body)
	}
}

// Acceptance 4: a server without S256 and a wrong iss are refused with
// clear errors.
func TestAuthorizationCodeRefusesNoPKCEAndWrongIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{NoS256: true}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	if resp, body := step(t, http.MethodGet, c.URL("/mcp/.oauth/start"), "alice", nil); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "S256") {
		t.Fatalf("no S256: %d %s", resp.StatusCode, body)
	}

	e2 := newEnv(t, fakeoauth.AuthServerOptions{WrongIss: "http://127.0.0.1:1/other"}, fakeoauth.UpstreamOptions{})
	c2 := startCaddy(t, e2.perUserSite(t, e2.confidentialClient()...), caddyOptions{Env: e2.secretEnv()})
	if resp, body := connect(t, c2.URL("/mcp/.oauth/start"), "alice"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "mismatch") {
		t.Fatalf("wrong iss: %d %s", resp.StatusCode, body)
	}
	if e2.as.TokenRequests("") != 0 {
		t.Fatal("the code was exchanged despite the wrong iss")
	}
	if debugLines(c2.Logs(), "unexpected issuer", "http://127.0.0.1:1/other") == 0 {
		t.Errorf("the log does not name the issuer:\n%s", tail(c2.Logs(), 10))
	}
}

// Behaviour 5: a refresh token rejected for good sends the user back to
// consent (not a 502); disconnect revokes and forgets.
func TestAuthorizationCodeBackToConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	start := c.URL("/mcp/.oauth/start")
	connect(t, start, "alice")
	if resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after consent: %d %s", resp.StatusCode, body)
	}
	e.as.RevokeAll()
	resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil)
	if got := authorizationRequired(t, resp.StatusCode, []byte(body)); got != start {
		t.Fatalf("after revocation at the server: %q", got)
	}
	connect(t, start, "alice")
	if resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after consenting again: %d %s", resp.StatusCode, body)
	}
	if resp, _ := step(t, http.MethodPost, c.URL("/mcp/.oauth/disconnect"), "alice", url.Values{}, "Origin", "https://attacker.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site disconnect: %d", resp.StatusCode)
	}
	if resp, body := step(t, http.MethodPost, c.URL("/mcp/.oauth/disconnect"), "alice", url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("disconnect: %d %s", resp.StatusCode, body)
	}
	if len(e.as.Revocations()) == 0 {
		t.Fatal("disconnect revoked nothing")
	}
	resp, body = step(t, http.MethodGet, c.URL("/echo"), "alice", nil)
	authorizationRequired(t, resp.StatusCode, []byte(body))
}

// Behaviour 1 (shared credential): clients are told an operator must
// connect it, with no client-facing URL; the admin API's authorize gives
// the operator the URL.
func TestAuthorizationCodeSharedCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.sharedAuthCodeSite(), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if got := authorizationRequired(t, status, body); got != "" || !strings.Contains(string(body), "caddy oauth-gateway authorize") {
		t.Fatalf("shared credential: url %q body %s", got, body)
	}
	if resp, _ := step(t, http.MethodGet, c.URL("/mcp/.oauth/start"), "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("client-facing start of a shared credential: %d", resp.StatusCode)
	}
	id := listCredentials(t, c)[0].ID
	status, raw := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/authorize", "")
	var v struct {
		AuthorizationURL string `json:"authorization_url"`
	}
	if status != http.StatusOK || json.Unmarshal(raw, &v) != nil || !strings.HasPrefix(v.AuthorizationURL, e.as.AuthorizeURL()) {
		t.Fatalf("admin authorize: %d %s", status, raw)
	}
	callback := consent(t, v.AuthorizationURL, "alice")
	if resp, body := step(t, http.MethodGet, callback, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("operator's callback: %d %s", resp.StatusCode, body)
	}
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK || decodeEcho(t, body).Subject != "alice" {
		t.Fatalf("after the operator connected it: %d %s", status, body)
	}
}

// Acceptance 5 (CIMD): the document is served and used as client_id.
func TestAuthorizationCodeClientMetadataDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{CIMD: true}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.perUserSite(t, "client_metadata_url http://127.0.0.1:{PORT}/mcp/.oauth/client.json"), caddyOptions{})
	status, body, _ := get(t, c.URL("/mcp/.oauth/client.json"))
	var doc map[string]any
	if status != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc["client_id"] != c.URL("/mcp/.oauth/client.json") {
		t.Fatalf("client metadata document: %d %s", status, body)
	}
	if resp, body := connect(t, c.URL("/mcp/.oauth/start"), "bob"); resp.StatusCode != http.StatusOK {
		t.Fatalf("CIMD flow: %d %s", resp.StatusCode, body)
	}
	if a := e.as.Authorizations(); len(a) != 1 || a[0].ClientID != c.URL("/mcp/.oauth/client.json") || e.as.CIMDFetches() == 0 {
		t.Fatalf("authorizations %+v, CIMD fetches %d", a, e.as.CIMDFetches())
	}
	if resp, body := step(t, http.MethodGet, c.URL("/echo"), "bob", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after CIMD consent: %d %s", resp.StatusCode, body)
	}
}

// Behaviour 5: a 403 insufficient_scope a refresh cannot satisfy asks the
// user to consent to the union of scopes.
func TestAuthorizationCodeStepUpThroughConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"admin"}}})
	c := startCaddy(t, e.perUserSite(t, append(e.confidentialClient(), "scope read", "max_scope read admin")...), caddyOptions{Env: e.secretEnv()})
	connect(t, c.URL("/mcp/.oauth/start"), "alice")
	resp, body := step(t, http.MethodGet, c.URL("/admin/echo"), "alice", nil)
	authURL := authorizationRequired(t, resp.StatusCode, []byte(body))
	// SEP-2350: the union of the scopes held and the challenged ones.
	if !strings.Contains(authURL, "scope=read+admin") {
		t.Fatalf("authorization_url %q does not ask for read and admin", authURL)
	}
	connect(t, authURL, "alice")
	if a := e.as.Authorizations(); len(a) != 2 || a[1].Scope != "read admin" {
		t.Fatalf("second consent asked for %+v", a)
	}
	resp, body = step(t, http.MethodGet, c.URL("/admin/echo"), "alice", nil)
	if resp.StatusCode != http.StatusOK || strings.Join(decodeEcho(t, []byte(body)).Scopes, " ") != "read admin" {
		t.Fatalf("after consenting to admin: %d %s", resp.StatusCode, body)
	}
	// Outside max_scope: no consent is offered for it.
	if resp, _ := step(t, http.MethodGet, c.URL("/mcp/.oauth/start?scope=root"), "alice", nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("start with a scope outside max_scope: %d", resp.StatusCode)
	}
}
