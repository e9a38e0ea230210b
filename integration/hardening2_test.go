package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Finding 9: a secret written literally is warned about at provisioning.
func TestLiteralSecretIsWarnedAbout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	site := strings.Replace(e.gatewaySite(), "{env.TEST_CLIENT_SECRET}", e.clientSecret, 1)
	c := startCaddy(t, site, caddyOptions{})
	if debugLines(c.Logs(), "secret written literally", "client_secret") == 0 {
		t.Fatalf("no warning about the literal client_secret:\n%s", tail(c.Logs(), 20))
	}
}

// Finding 10: a malformed access token (CR/LF, expires_in 0) is refused
// rather than cached forever; the next token is used.
func TestMalformedAccessTokenIsNotCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	var calls atomic.Int64
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			_, _ = w.Write([]byte(`{"access_token":"abc\r\nX-Injected: 1","token_type":"Bearer","expires_in":0}`))
			return
		}
		tok := e.as.IssueAccessToken(e.clientID, []string{"read"}, e.up.Resource())
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":-5}`, tok)
	}))
	defer as.Close()
	site := strings.Replace(e.gatewaySite(), e.as.TokenURL(), as.URL+"/token", 1)
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusOK {
		// The malformed answer is a server error, retried (with backoff).
		deadline := time.Now().Add(10 * time.Second)
		for status != http.StatusOK && time.Now().Before(deadline) {
			time.Sleep(300 * time.Millisecond)
			status, body, _ = get(t, c.URL("/echo"))
		}
	}
	if status != http.StatusOK {
		t.Fatalf("status %d %s: the malformed token was kept", status, body)
	}
	if calls.Load() < 2 {
		t.Fatalf("token requests %d", calls.Load())
	}
}

// Finding 11: client errors do not reflect attacker-supplied strings, and
// an authorization server echoing the Basic header leaves no encoded
// secret in the log or the admin API.
func TestErrorsReflectNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{MetadataResource: "http://127.0.0.1:1/<script>attacker"})
	c := startCaddy(t, e.discoverySite(e.up.URL()+"/mcp", "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusBadGateway || strings.Contains(string(body), "attacker") || strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("status %d body %s: reflects the document or internal URLs", status, body)
	}
	if debugLines(c.Logs(), "attacker") == 0 {
		t.Error("the log does not keep the detail")
	}

	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		desc := "you sent " + r.Header.Get("Authorization") + " and " + r.PostForm.Encode()
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": desc})
	}))
	defer echo.Close()
	site := strings.Replace(e.gatewaySite(), e.as.TokenURL(), echo.URL+"/token", 1)
	c2 := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	get(t, c2.URL("/echo"))
	_, admin := adminDo(t, c2, http.MethodGet, "/oauth_gateway/credentials", "")
	secrets := e.secrets(basicCredential(e.clientID, e.clientSecret))
	assertNoSecrets(t, c2.Logs(), secrets...)
	assertNoSecrets(t, string(admin), secrets...)

	// Control characters in admin input are refused.
	id := listCredentials(t, c2)[0].ID
	if status, _ := adminDo(t, c2, http.MethodPost, "/oauth_gateway/credentials/"+id+"/unpin", `{"issuer":"https://a.example/\r\nx"}`); status != http.StatusBadRequest {
		t.Errorf("issuer with CR LF: %d, want 400", status)
	}
}

// Finding 12: with the wrong encryption_key the stored record is kept,
// byte for byte, and no token is requested without its pin; with the
// right key it serves again.
func TestUnreadableRecordFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	dir := t.TempDir()
	site := e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1")
	global := func(key string) string {
		return fmt.Sprintf("oauth_gateway {\n\t\tstorage file %s\n\t\tencryption_key %s\n\t}", dir, key)
	}
	const key1 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	const key2 = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv(), Global: global(key1)})
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatal("first request failed")
	}
	c.Stop()
	files, _ := filepath.Glob(filepath.Join(dir, "oauth_gateway", "credentials", "*.json"))
	if len(files) != 1 {
		t.Fatalf("stored records: %v", files)
	}
	stored, _ := os.ReadFile(files[0])
	before := e.as.TokenRequests("")

	c2 := startCaddy(t, site, caddyOptions{Env: e.secretEnv(), Global: global(key2)})
	status, body, _ := get(t, c2.URL("/echo"))
	if status != http.StatusBadGateway || !strings.Contains(string(body), "encryption_key") {
		t.Fatalf("wrong key: %d %s, want 502 naming encryption_key", status, body)
	}
	if n := e.as.TokenRequests("") - before; n != 0 {
		t.Fatalf("%d token requests without the stored pin", n)
	}
	c2.Stop()
	if now, _ := os.ReadFile(files[0]); !bytes.Equal(now, stored) {
		t.Fatal("the unreadable record was overwritten")
	}
	c3 := startCaddy(t, site, caddyOptions{Env: e.secretEnv(), Global: global(key1)})
	if status, body, _ := get(t, c3.URL("/echo")); status != http.StatusOK {
		t.Fatalf("right key again: %d %s", status, body)
	}
}

// Issue 11, "Also": a slow-drip token endpoint holds the client for at
// most token_wait, then 503 with Retry-After.
func TestSlowTokenEndpointAnswersWithinTokenWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Latency: 20 * time.Second}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite("token_wait 1s"), caddyOptions{Env: e.secretEnv()})
	status, body, hdr := get(t, c.URL("/echo"))
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "within 1s") {
		t.Fatalf("status %d %s (Retry-After %q), want 503 after token_wait", status, body, hdr.Get("Retry-After"))
	}
}
