package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// discoverySite configures only the resource and client credentials.
func (e *env) discoverySite(resource string, extra ...string) string {
	return fmt.Sprintf(`	oauth_gateway {
		resource       %s
		client_id      %s
		client_secret  {env.TEST_CLIENT_SECRET}
		insecure_allow_http
%s
	}
	reverse_proxy %s`, resource, e.clientID, indent(extra), strings.TrimPrefix(e.up.URL(), "http://"))
}

// Issue 3, acceptance 3: only resource and client credentials; the
// authorization server has a path-bearing issuer; found once via RFC 8414
// and once via the OIDC fallback; metadata is fetched once, not per request.
func TestDiscoveryFindsPathIssuer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		as   fakeoauth.AuthServerOptions
		// metadata fetches expected at the AS: the 8414 document, or the
		// 8414 miss plus the OIDC document.
		asFetches int
	}{
		{"rfc8414", fakeoauth.AuthServerOptions{IssuerPath: "/tenant1"}, 1},
		{"oidc fallback", fakeoauth.AuthServerOptions{IssuerPath: "/tenant1", DisableOAuthMetadata: true}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.as, fakeoauth.UpstreamOptions{})
			c := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
			for i := 0; i < 20; i++ {
				if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
					t.Fatalf("request %d: %d %s\n%s", i, status, body, tail(c.Logs(), 20))
				}
			}
			if n := e.as.MetadataFetches(); n != tc.asFetches {
				t.Errorf("authorization server metadata fetches = %d, want %d", n, tc.asFetches)
			}
			if n := e.up.MetadataFetches(); n != 1 {
				t.Errorf("protected resource metadata fetches = %d, want 1", n)
			}
			reqs := e.as.Requests()
			if len(reqs) != 1 || reqs[0].Resource != e.up.Resource() || reqs[0].Scope != "read write" {
				t.Fatalf("token requests %+v (scope should come from scopes_supported)", reqs)
			}
			assertNoSecrets(t, c.Logs(), e.secrets()...)
		})
	}
}

// expectUntrusted: the client gets a 502 server_error with a stable
// description (no URL or remote string reflected); the log names the
// detail.
func expectUntrusted(t *testing.T, c *caddyProc, wantInLog string) {
	t.Helper()
	status, body, _ := get(t, c.URL("/echo"))
	var oe map[string]string
	if status != http.StatusBadGateway || json.Unmarshal(body, &oe) != nil || oe["error"] != "server_error" ||
		!strings.Contains(oe["error_description"], "credential ") || strings.Contains(oe["error_description"], "http") {
		t.Fatalf("status %d body %s, want 502 server_error with a stable description", status, body)
	}
	if debugLines(c.Logs(), wantInLog) == 0 {
		t.Fatalf("no log line mentions %q:\n%s", wantInLog, tail(c.Logs(), 20))
	}
}

// Issue 3, acceptance 4: untrusted metadata never leads to a token request.
func TestDiscoveryRefusesMismatchedResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{MetadataResource: "http://127.0.0.1:1/someone-else"})
	c := startCaddy(t, e.discoverySite(e.up.URL()+"/mcp", "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	expectUntrusted(t, c, "someone-else")
	if n := e.as.TokenRequests(""); n != 0 {
		t.Fatalf("token requests = %d, want 0", n)
	}
}

func TestDiscoveryRefusesMismatchedIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{IssuerPath: "/t1", MetadataIssuer: "http://evil.example/t1"}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	expectUntrusted(t, c, "evil.example")
	if n := e.as.TokenRequests(""); n != 0 {
		t.Fatalf("token requests = %d, want 0", n)
	}
}

// The upstream later advertises another authorization server: the
// credential stays pinned, the other server gets nothing, the client gets
// a clear error and the log names both issuers.
func TestDiscoveryPinsIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{IssuerPath: "/good"}, fakeoauth.UpstreamOptions{})
	evil, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{IssuerPath: "/evil"})
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	evil.AddClient(e.clientID, e.clientSecret) // it would accept the secret
	c := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatal("first request failed")
	}
	e.up.AdvertiseIssuer(evil.Issuer())
	e.as.InvalidateAccessTokens()
	expectUntrusted(t, c, e.as.Issuer())
	if n := evil.TokenRequests(""); n != 0 {
		t.Fatalf("the other authorization server received %d token requests", n)
	}
	if debugLines(c.Logs(), "different authorization server", e.as.Issuer(), evil.Issuer()) == 0 {
		t.Errorf("no warning naming both issuers:\n%s", tail(c.Logs(), 20))
	}
	// Still refused on later requests (until the configuration changes).
	expectUntrusted(t, c, e.as.Issuer())
	if evil.TokenRequests("") != 0 {
		t.Fatal("token request reached the other server")
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}

// A resource on a public name whose challenge points metadata at a
// private address: refused (RFC 9728 §7.7) unless discovery_allow_hosts
// names the host, and then the request succeeds by learning from the 401.
func TestDiscoveryBlocksPrivateMetadataURL(t *testing.T) {
	t.Parallel()
	const resource = "https://mcp.gateway-test.invalid/mcp"
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{ResourceID: resource})

	c := startCaddy(t, e.discoverySite(resource), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusBadGateway || !strings.Contains(string(body), "does not contact") || debugLines(c.Logs(), "not allowed") == 0 {
		t.Fatalf("status %d %s, want 502 for the blocked destination", status, body)
	}
	if e.as.TokenRequests("") != 0 || e.as.MetadataFetches() != 0 || e.up.MetadataFetches() != 0 {
		t.Fatalf("private address contacted: token %d, AS metadata %d, PRM %d",
			e.as.TokenRequests(""), e.as.MetadataFetches(), e.up.MetadataFetches())
	}

	// The authorization server (127.0.0.1) is not on the resource's
	// domain: the secret goes there only when trusted_issuers names it.
	c2 := startCaddy(t, e.discoverySite(resource, "discovery_allow_hosts 127.0.0.1", "trusted_issuers "+e.as.Issuer()), caddyOptions{Env: e.secretEnv()})
	status, body, _ = get(t, c2.URL("/echo"))
	if status != http.StatusOK {
		t.Fatalf("with discovery_allow_hosts: %d %s\n%s", status, body, tail(c2.Logs(), 20))
	}
	if r := e.as.Requests(); len(r) != 1 || r[0].Resource != resource {
		t.Fatalf("token requests %+v", r)
	}
}
