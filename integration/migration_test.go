package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 19 finding 2 / MCP 2026-07-28 SEP-2352: the resource moves to
// another authorization server. A credential whose client the gateway
// registered itself (DCR) is never reused there: its refresh token is
// revoked at the old server, the user goes back to consent, and the
// gateway registers anew at the new server. An operator-configured
// client stays bound (fail closed).
func TestAuthorizationServerMigration(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, Registration: true}, fakeoauth.UpstreamOptions{})
	b, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{IssuerPath: "/b", Rotate: true, Registration: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	site := basicAuthBlock(t) + fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:{PORT}/mcp/.oauth/callback
		principal      {http.auth.user.id}
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
	}
	reverse_proxy %s`, e.up.Resource(), strings.TrimPrefix(e.up.URL(), "http://"))
	c := startCaddy(t, site, caddyOptions{})
	start := c.URL("/mcp/.oauth/start")
	if resp, body := connect(t, start, "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("consent at A: %d %s", resp.StatusCode, body)
	}
	if resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice at A: %d %s", resp.StatusCode, body)
	}

	e.up.MoveTo(b)                // the metadata names B, and only B's tokens work
	e.as.InvalidateAccessTokens() // alice's next request needs a refresh
	resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil)
	if got := authorizationRequired(t, resp.StatusCode, []byte(body)); got != start {
		t.Fatalf("after the move: authorization_url %q", got)
	}
	if got := strings.Join(e.as.Revocations(), ","); got != "refresh_token" {
		t.Fatalf("revocations at the old server: %q, want the refresh token", got)
	}
	if n := b.TokenRequests(""); n != 0 {
		t.Fatalf("the new server received %d token requests before consent", n)
	}
	st := credentialFor(t, c, "alice")
	if st.Issuer != "" || !strings.Contains(st.LastError, "changed from "+e.as.Issuer()+" to "+b.Issuer()) {
		t.Fatalf("admin status after the move: %+v", st)
	}
	if !strings.Contains(c.Logs(), "authorization server changed") {
		t.Error("no WARN naming the change")
	}

	// Consent at B: a new registration there, then alice is served.
	if resp, body := connect(t, start, "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("consent at B: %d %s", resp.StatusCode, body)
	}
	if b.Registrations() != 1 {
		t.Fatalf("registrations at B: %d, want 1", b.Registrations())
	}
	if resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil); resp.StatusCode != http.StatusOK || decodeEcho(t, []byte(body)).Subject != "alice" {
		t.Fatalf("alice at B: %d %s", resp.StatusCode, body)
	}
	if st := credentialFor(t, c, "alice"); st.Issuer != b.Issuer() {
		t.Fatalf("binding after consent at B: %q", st.Issuer)
	}
	assertNoSecrets(t, c.Logs(), append(e.as.IssuedSecrets(), b.IssuedSecrets()...)...)
}

// credentialFor is user's credential as the admin API lists it.
func credentialFor(t *testing.T, c *caddyProc, user string) credStatus {
	t.Helper()
	for _, st := range listCredentials(t, c) {
		if st.Principal == user {
			return st
		}
	}
	t.Fatalf("no credential for %s", user)
	return credStatus{}
}
