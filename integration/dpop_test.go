package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 10, acceptance 4: DPoP. The fake servers verify every proof with
// their own go-jose code (signature, htm, htu, iat window, jti never
// reused, ath, jkt binding); both demand nonces; 200 concurrent requests
// carry 200 distinct jtis; a restart keeps the binding (the key is stored
// with the credential, encrypted).
func TestDPoPBoundTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{DPoPNonce: true}, fakeoauth.UpstreamOptions{DPoPNonce: true})
	dir := t.TempDir()
	const key = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
	opts := caddyOptions{Env: append(e.secretEnv(), "TEST_KEY="+key),
		Global: fmt.Sprintf("oauth_gateway {\n\t\tstorage file %s\n\t\tencryption_key {env.TEST_KEY}\n\t}", dir)}
	c := startCaddy(t, e.gatewaySite("dpop"), opts)

	// First request: the authorization server asks for its nonce (one
	// retry), then the upstream asks for its own (one replay). Both
	// demand their nonce on every request, so a 200 means both were
	// answered.
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusOK {
		t.Fatalf("first request: %d %s\n%s", status, body, tail(c.Logs(), 3000))
	}
	echo := decodeEcho(t, body)
	token, ok := strings.CutPrefix(echo.Authorization, "DPoP ")
	if !ok {
		t.Fatalf("upstream got %q, want a DPoP token", echo.Authorization)
	}
	jkt := e.as.BoundKey(token)
	if jkt == "" {
		t.Fatal("the authorization server did not bind the token to a key")
	}
	if !slices.Contains(echo.Headers, "Dpop") {
		t.Fatalf("no DPoP proof reached the upstream: headers %v", echo.Headers)
	}

	// 200 concurrent requests, GET and POST with bodies: each with a
	// fresh proof.
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := map[int]int{}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			method := http.MethodGet
			if i%2 == 1 {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, c.URL(fmt.Sprintf("/echo/%d?q=%d", i, i)), strings.NewReader(`{"n":1}`))
			status, _, _ := do(t, req)
			if status != http.StatusOK {
				mu.Lock()
				failures[status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	verified, distinct, rejected := e.up.DPoPStats()
	t.Logf("upstream: %d proofs verified, %d distinct jti, rejections %v; authorization server: %s", verified, distinct, rejected, fmtStats(e.as))
	if len(failures) > 0 || len(rejected) > 0 {
		t.Fatalf("failed requests %v, proofs rejected by the upstream: %v", failures, rejected)
	}
	if verified < 201 || distinct < 201 {
		t.Fatalf("upstream verified %d proofs with %d distinct jti, want at least 201 each", verified, distinct)
	}

	// A replay after a 401 carries a new proof for the new token.
	e.as.InvalidateAccessTokens()
	status, body, _ = get(t, c.URL("/echo"))
	if status != http.StatusOK {
		t.Fatalf("after invalidation: %d %s", status, body)
	}
	if _, _, rejected := e.up.DPoPStats(); len(rejected) > 0 {
		t.Fatalf("replayed proofs rejected: %v", rejected)
	}
	token2, _ := strings.CutPrefix(decodeEcho(t, body).Authorization, "DPoP ")
	if token2 == token || e.as.BoundKey(token2) != jkt {
		t.Fatalf("the refreshed token is bound to %q, want the credential's key %q", e.as.BoundKey(token2), jkt)
	}

	// Restart: the key comes back from the (encrypted) store, so the
	// stored token is used with proofs the upstream accepts, and the
	// refresh token bound to the key still refreshes.
	records, _ := filepath.Glob(filepath.Join(dir, "oauth_gateway", "credentials", "*.json"))
	for _, f := range records {
		raw, _ := os.ReadFile(f)
		if strings.Contains(string(raw), "dpop_key") || strings.Contains(string(raw), `"d"`) {
			t.Fatalf("the DPoP key is stored in the clear in %s", f)
		}
	}
	requestsBefore := e.as.TokenRequests("")
	c.Restart(opts.Env...)
	status, body, _ = get(t, c.URL("/echo"))
	if status != http.StatusOK || !strings.HasPrefix(decodeEcho(t, body).Authorization, "DPoP "+token2) {
		t.Fatalf("after restart: %d %s", status, body)
	}
	if n := e.as.TokenRequests(""); n != requestsBefore {
		t.Fatalf("%d token requests after the restart, want the stored token reused", n-requestsBefore)
	}
	e.as.InvalidateAccessTokens()
	if status, body, _ = get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("refresh after restart: %d %s\n%s", status, body, tail(c.Logs(), 2000))
	}
	if _, _, rejected := e.up.DPoPStats(); len(rejected) > 0 {
		t.Fatalf("proofs rejected after the restart: %v", rejected)
	}
	if _, asRejected := e.as.DPoPStats(); len(asRejected) > 0 {
		t.Fatalf("the authorization server rejected proofs: %v", asRejected)
	}
	assertNoSecrets(t, c.Logs(), e.secrets(token, token2)...)
}

// A server that answers a DPoP token request with a Bearer token gets it
// presented as Bearer, and the log says so.
func TestDPoPServerIssuesBearer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{DPoPAnswerBearer: true}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite("dpop"), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusOK || !strings.HasPrefix(decodeEcho(t, body).Authorization, "Bearer ") {
		t.Fatalf("%d %s", status, body)
	}
	if !strings.Contains(c.Logs(), "not DPoP-bound") {
		t.Fatal("no log line says the token is not bound")
	}
}

func fmtStats(as *fakeoauth.AuthServer) string {
	verified, rejected := as.DPoPStats()
	return fmt.Sprintf("%d proofs verified, rejections %v", verified, rejected)
}
