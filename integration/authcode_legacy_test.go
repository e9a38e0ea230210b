package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Behaviour 7: a legacy (MCP 2025-03-26) server without protected
// resource metadata or authorization server metadata: the gateway uses
// /authorize, /token and /register at the MCP server's origin.
func TestAuthorizationCodeLegacyMCPServer(t *testing.T) {
	t.Parallel()
	as := fakeoauth.NewAuthServer(fakeoauth.AuthServerOptions{Registration: true, DisableOAuthMetadata: true, DisableOIDCMetadata: true})
	up := fakeoauth.NewUpstream(fakeoauth.UpstreamOptions{AuthServer: as})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource"):
			http.NotFound(w, r) // a 2025-03-26 server has none
		case r.URL.Path == "/authorize" || r.URL.Path == "/authorize/decide" || r.URL.Path == "/token" ||
			r.URL.Path == "/register" || strings.HasPrefix(r.URL.Path, "/.well-known/"):
			as.ServeHTTP(w, r)
		default:
			up.ServeHTTP(w, r)
		}
	}))
	defer srv.Close()
	as.SetOrigin(srv.URL)
	up.SetOrigin(srv.URL)
	site := basicAuthBlock(t) + fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:{PORT}/mcp/.oauth/callback
		principal      {http.auth.user.id}
		insecure_allow_http
	}
	reverse_proxy %s`, up.Resource(), strings.TrimPrefix(srv.URL, "http://"))
	c := startCaddy(t, site, caddyOptions{})
	if resp, body := connect(t, c.URL("/mcp/.oauth/start"), "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("legacy flow: %d %s\n%s", resp.StatusCode, body, tail(c.Logs(), 20))
	}
	if as.Registrations() != 1 {
		t.Fatalf("registrations %d", as.Registrations())
	}
	resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil)
	if resp.StatusCode != http.StatusOK || decodeEcho(t, []byte(body)).Subject != "alice" {
		t.Fatalf("after consent: %d %s", resp.StatusCode, body)
	}
}
