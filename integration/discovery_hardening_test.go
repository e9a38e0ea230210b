package integration

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Without insecure_allow_http, an authorization server whose metadata
// names an http authorization or registration endpoint is refused: the
// user is never sent to the http authorization endpoint and nothing is
// posted to the http registration endpoint; the log names the endpoint
// and insecure_allow_http.
//
// The metadata itself must come over https (without insecure_allow_http
// the gateway fetches nothing over http), so the authorization server is
// a TLS server whose certificate Caddy trusts through SSL_CERT_FILE. The
// http endpoints it names are a plain server that counts requests;
// discovery_allow_hosts lets the gateway reach loopback, so only the
// scheme rule stands between it and them.
func TestDiscoveryRefusesHTTPEndpointsWithoutInsecureAllowHTTP(t *testing.T) {
	t.Parallel()
	var plainHits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		if r.URL.Path == "/register" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"client_id":"registered-over-http","token_endpoint_auth_method":"none"}`)
			return
		}
		http.Error(w, "the gateway must not send anyone here", http.StatusTeapot)
	}))
	defer plain.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer up.Close()

	for _, tc := range []struct {
		field string
		extra []string // the gateway's client configuration
	}{
		// A configured client: the authorization endpoint is where the
		// user would be sent.
		{"authorization_endpoint", []string{"client_id c-https-only", "client_secret {env.TEST_CLIENT_SECRET}"}},
		// No client_id: the gateway would register over http.
		{"registration_endpoint", nil},
	} {
		t.Run(tc.field, func(t *testing.T) {
			plainHits.Store(0)
			var metadataFetches atomic.Int64
			var as *httptest.Server
			as = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/.well-known/oauth-authorization-server" {
					http.NotFound(w, r)
					return
				}
				metadataFetches.Add(1)
				endpoint := func(field, path string) string {
					if field == tc.field {
						return plain.URL + path
					}
					return as.URL + path
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":"%s/token","authorization_endpoint":%q,"registration_endpoint":%q,
					"code_challenge_methods_supported":["S256"],"token_endpoint_auth_methods_supported":["client_secret_basic","none"]}`,
					as.URL, as.URL, endpoint("authorization_endpoint", "/authorize"), endpoint("registration_endpoint", "/register"))
			}))
			defer as.Close()
			certFile := filepath.Join(t.TempDir(), "as.pem")
			if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: as.Certificate().Raw}), 0o600); err != nil {
				t.Fatal(err)
			}

			site := basicAuthBlock(t) + fmt.Sprintf(`	oauth_gateway {
		resource       https://mcp.gateway-test.invalid/mcp
		issuer         %s
		grant          authorization_code
		redirect_uri   https://127.0.0.1:{PORT}/mcp/.oauth/callback
		principal      {http.auth.user.id}
		discovery_allow_hosts 127.0.0.1
%s
	}
	reverse_proxy %s`, as.URL, indent(tc.extra), strings.TrimPrefix(up.URL, "http://"))
			c := startCaddy(t, site, caddyOptions{Env: []string{"SSL_CERT_FILE=" + certFile, "TEST_CLIENT_SECRET=cs_https_only_secret"}})

			resp, body := step(t, http.MethodGet, c.URL("/mcp/.oauth/start"), "alice", nil)
			if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, plain.URL) {
				t.Fatalf("start: %d (Location %q) %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body, tail(c.Logs(), 20))
			}
			if metadataFetches.Load() == 0 {
				t.Fatalf("the metadata was never fetched (over https):\n%s", tail(c.Logs(), 20))
			}
			if n := plainHits.Load(); n != 0 {
				t.Fatalf("the http endpoint was contacted %d times", n)
			}
			if debugLines(c.Logs(), tc.field, plain.URL, "insecure_allow_http") == 0 {
				t.Fatalf("no log line names %s, its http URL and insecure_allow_http:\n%s", tc.field, tail(c.Logs(), 20))
			}
			assertNoSecrets(t, c.Logs(), "cs_https_only_secret")
		})
	}
}
