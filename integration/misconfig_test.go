package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 10, acceptance 5: answers that mean the configuration is wrong
// (unsupported_grant_type, unauthorized_client, invalid_scope, and no
// authorization server metadata where the configuration points) are a
// 502 saying what to change, with at most one token request (or one
// discovery) per minute however many requests arrive.
func TestMisconfigurationIsA502AndRetriedSlowly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code string
		fix  string // in the client's description
	}{
		{"unsupported_grant_type", "change grant"},
		{"unauthorized_client", "change grant"},
		{"invalid_scope", "change scope"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
			e.as.FailNext(100, http.StatusBadRequest, fmt.Sprintf(`{"error":%q}`, tc.code), "application/json", nil)
			c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
			for i := range 5 {
				status, body, _ := get(t, c.URL("/echo"))
				if status != http.StatusBadGateway || !strings.Contains(string(body), tc.code) || !strings.Contains(string(body), tc.fix) {
					t.Fatalf("request %d: %d %s, want 502 naming %s and saying %q", i, status, body, tc.code, tc.fix)
				}
			}
			if n := e.as.TokenRequests(""); n != 1 {
				t.Fatalf("%d token requests for 5 client requests, want 1 (the next one after a minute)", n)
			}
			if !strings.Contains(c.Logs(), `"level":"error"`) || !strings.Contains(c.Logs(), tc.code) {
				t.Fatal("no ERROR log line names the fault")
			}
		})
	}
	t.Run("no_metadata", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
		var fetches atomic.Int32
		nothing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			http.NotFound(w, r)
		}))
		t.Cleanup(nothing.Close)
		c := startCaddy(t, e.discoverySite(e.up.Resource(), "issuer "+nothing.URL), caddyOptions{Env: e.secretEnv()})
		for i := range 5 {
			status, body, _ := get(t, c.URL("/echo"))
			if status != http.StatusBadGateway || !strings.Contains(string(body), "set issuer or token_endpoint") {
				t.Fatalf("request %d: %d %s, want 502 saying to set issuer or token_endpoint", i, status, body)
			}
		}
		// One discovery: the RFC 8414 URL and its OIDC fallback.
		if n := fetches.Load(); n > 2 {
			t.Fatalf("%d metadata fetches for 5 client requests, want one discovery (at most 2 URLs)", n)
		}
		if n := e.as.TokenRequests(""); n != 0 {
			t.Fatalf("%d token requests without metadata", n)
		}
	})
}
