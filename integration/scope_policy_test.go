package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 20, item 7: scope and refresh correctness, each for a
// configuration a user would write. Every rule lives in gateway/scope.go.

// A refresh-token credential with discovery and no `scope` refreshes
// without a scope parameter (RFC 6749 §6). It used to ask for the
// resource's scopes_supported (read write); a strict server, which
// refuses a refresh that adds scope, answered invalid_scope and the
// credential died.
func TestRefreshSendsNoDiscoveredScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.discoverySite(e.up.Resource(), "grant refresh_token", "refresh_token {env.TEST_SEED}", "discovery_allow_hosts 127.0.0.1")
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("first request: %d %s", status, body)
	}
	e.as.InvalidateAccessTokens()
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("after a refresh: %d %s", status, body)
	}
	reqs := e.as.Requests()
	if len(reqs) != 2 {
		t.Fatalf("token requests %+v, want 2 refreshes", reqs)
	}
	for _, r := range reqs {
		if r.Grant != "refresh_token" || r.Scope != "" {
			t.Errorf("refresh sent scope %q (grant %s), want none", r.Scope, r.Grant)
		}
	}
}

// With token_endpoint configured, the machine credential's step-up bound
// (scope plus the resource's scopes_supported, no max_scope) still reads
// the resource's metadata: a scope it publishes is granted. It used to
// be refused, because only discovery read the metadata.
func TestStepUpBoundReadsResourceMetadataWithTokenEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"write"}}})
	c := startCaddy(t, e.gatewaySite("scope read", "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/admin/echo"))
	if status != http.StatusOK {
		t.Fatalf("step-up for a scope the resource publishes: %d %s", status, body)
	}
	if got := strings.Join(decodeEcho(t, body).Scopes, " "); got != "read write" {
		t.Fatalf("token scopes %q, want read write", got)
	}
	// A scope the resource does not publish stays outside the bound.
	e2 := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"admin"}}})
	c2 := startCaddy(t, e2.gatewaySite("scope read", "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e2.secretEnv()})
	if status, body, _ := get(t, c2.URL("/admin/echo")); status != http.StatusForbidden || !strings.Contains(string(body), "max_scope") {
		t.Fatalf("step-up outside the bound: %d %s", status, body)
	}
}

// offline_access is asked for only when the authorization server lists
// it (SEP-2207), never because the resource's metadata does.
func TestOfflineAccessOnlyFromTheAuthorizationServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, ScopesSupported: []string{"read", "write"}},
		fakeoauth.UpstreamOptions{ScopesSupported: []string{"read", "offline_access"}})
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	if resp, body := connect(t, c.URL("/mcp/.oauth/start"), "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("consent: %d %s", resp.StatusCode, body)
	}
	auths := e.as.Authorizations()
	if len(auths) != 1 || auths[0].Scope != "read" {
		t.Fatalf("authorization requests %+v, want scope read only", auths)
	}
}

// max_scope bounds the scopes the gateway asks for on its own initiative:
// the resource's scopes_supported (here read write) is clipped to it.
func TestMaxScopeClipsDiscoveredScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	site := e.discoverySite(e.up.Resource(), "max_scope read", "discovery_allow_hosts 127.0.0.1")
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	if reqs := e.as.Requests(); len(reqs) != 1 || reqs[0].Scope != "read" {
		t.Fatalf("token requests %+v, want scope read", reqs)
	}
}

// The "rejected again" throttle applies only to a token the upstream
// never accepted. Here every token serves requests and is then revoked,
// twice within the 10 s throttle window: each revocation is refreshed at
// once. The second used to reach the client as a 401.
func TestRevokedTokenIsRefreshedAgainAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite("scope read"), caddyOptions{Env: e.secretEnv()})
	for i := 0; i < 3; i++ {
		if i > 0 {
			e.as.InvalidateAccessTokens() // a revocation of a token that served
		}
		if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
			t.Fatalf("request %d (after %d revocations): %d %s", i, i, status, body)
		}
	}
	if n := e.as.TokenRequests(""); n != 3 {
		t.Fatalf("token requests = %d, want 3 (the first and one per revocation)", n)
	}
}

// Issue 20, item 6: the resource parameter is the protected resource
// metadata's `resource` when the configured URL is a longer form of it
// (RFC 9728 §3, RFC 8707). The upstream's metadata, at the root
// well-known URL, names <origin>/mcp; the gateway is configured with
// <origin>/mcp/tools. Tokens are audience-bound: one asked for the longer
// form was rejected by the upstream.
func TestResourceParameterIsTheMetadatasResource(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{MetadataAtRoot: true})
	e.up.SetMetadataResource(e.up.Resource())
	site := e.discoverySite(e.up.Resource()+"/tools", "discovery_allow_hosts 127.0.0.1")
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	if reqs := e.as.Requests(); len(reqs) == 0 || reqs[0].Resource != e.up.Resource() {
		t.Fatalf("token requests %+v, want resource %s", reqs, e.up.Resource())
	}
}
