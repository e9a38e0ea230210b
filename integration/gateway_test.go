package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

type echoReply struct {
	Authorization string   `json:"authorization"`
	SHA256        string   `json:"sha256"`
	Length        int      `json:"length"`
	Scopes        []string `json:"scopes"`
	Subject       string   `json:"subject"`
	Headers       []string `json:"headers"`
}

func decodeEcho(t *testing.T, body []byte) echoReply {
	t.Helper()
	var r echoReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("echo reply %q: %v", body, err)
	}
	return r
}

// Acceptance 1: the upstream sees the gateway's token, not the client's;
// a second request reuses it.
func TestInjectsGatewayTokenAndReusesIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite("scope read write"), caddyOptions{Env: e.secretEnv()})

	status, body, _ := get(t, c.URL("/echo"), "Authorization", "Bearer client-supplied-token")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	got := decodeEcho(t, body).Authorization
	if !strings.HasPrefix(got, "Bearer at_") || strings.Contains(got, "client-supplied-token") {
		t.Fatalf("upstream saw %q, want the gateway's token", got)
	}
	status, body, _ = get(t, c.URL("/echo"))
	if status != http.StatusOK || decodeEcho(t, body).Authorization != got {
		t.Fatalf("second request: %d %s", status, body)
	}
	if n := e.as.TokenRequests(""); n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
	req := e.as.Requests()[0]
	if req.Grant != "client_credentials" || req.Resource != e.up.Resource() || req.Scope != "read write" ||
		req.Accept != "application/json" || req.AuthMethod != "client_secret_basic" {
		t.Fatalf("token request = %+v", req)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}

// Acceptance 2: after the authorization server invalidates the access
// token, a 64 KiB POST is replayed byte-identical after exactly one
// refresh and one upstream 401.
func TestReplaysBodyAfterUpstream401(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("warm-up: %d %s", status, body)
	}
	e.as.InvalidateAccessTokens()
	_, unauthorizedBefore, _ := e.up.Counts()

	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	req, _ := http.NewRequest(http.MethodPost, c.URL("/echo"), bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/octet-stream")
	status, body, _ := do(t, req)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	sum := sha256.Sum256(payload)
	if r := decodeEcho(t, body); r.SHA256 != hex.EncodeToString(sum[:]) || r.Length != len(payload) {
		t.Fatalf("upstream got %d bytes sha %s, want %d bytes identical", r.Length, r.SHA256, len(payload))
	}
	if n := e.as.TokenRequests(""); n != 2 {
		t.Fatalf("token requests = %d, want 2 (initial + one refresh)", n)
	}
	if _, u, _ := e.up.Counts(); u-unauthorizedBefore != 1 {
		t.Fatalf("upstream 401s = %d, want 1", u-unauthorizedBefore)
	}
	logs := c.Logs()
	if debugLines(logs, "replaying with a new one") != 1 || debugLines(logs, "obtained token", `"reason":"reactive"`) != 1 {
		t.Errorf("replay and refresh not visible at debug level:\n%s", tail(logs, 20))
	}
	assertNoSecrets(t, logs, e.secrets()...)
}

// A body larger than max_replay_body streams through; the 401 reaches the
// client with a Bearer challenge, and the next request has a new token.
func TestLargeBodyIsNotBufferedAnd401PassesThrough(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{Challenge: fakeoauth.ChallengeBare})
	c := startCaddy(t, e.gatewaySite("max_replay_body 1KiB"), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/echo"))
	e.as.InvalidateAccessTokens()

	req, _ := http.NewRequest(http.MethodPost, c.URL("/echo"), bytes.NewReader(make([]byte, 4096)))
	status, body, hdr := do(t, req)
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 passed through", status)
	}
	if !strings.Contains(hdr.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
		t.Fatalf("bare upstream 401 reached the client without a Bearer challenge: %q", hdr.Get("WWW-Authenticate"))
	}
	var oe map[string]any
	if json.Unmarshal(body, &oe) != nil || oe["error"] != "invalid_token" {
		t.Fatalf("401 body %s, want an RFC 6750 JSON error", body)
	}
	// The gateway refreshed in the background; once it holds the new
	// token (generation 2: the request reached the server *and* the
	// answer was stored), the client's retry works.
	deadline := time.Now().Add(5 * time.Second)
	for listCredentials(t, c)[0].Generation < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	req, _ = http.NewRequest(http.MethodPost, c.URL("/echo"), bytes.NewReader(make([]byte, 4096)))
	if status, body, _ := do(t, req); status != http.StatusOK {
		t.Fatalf("retry: %d %s", status, body)
	}
}

// Acceptance 3: 200 concurrent requests after invalidation all succeed
// with exactly one token request.
func TestRefreshStormMakesOneTokenRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/echo"))
	e.as.InvalidateAccessTokens()
	before := e.as.TokenRequests("")

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200, MaxConnsPerHost: 0}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := 0
	start := make(chan struct{})
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Get(c.URL("/echo"))
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				resp.Body.Close()
			}
			if !ok {
				mu.Lock()
				failures++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if failures != 0 {
		t.Fatalf("%d of 200 requests failed", failures)
	}
	if n := e.as.TokenRequests("") - before; n != 1 {
		t.Fatalf("token requests during the storm = %d, want 1", n)
	}
}

// Acceptance 4: the first SSE event reaches the client while the upstream
// is still streaming.
func TestSSEStreamsEventByEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{SSETimeout: 20 * time.Second})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	resp, err := http.Get(c.URL("/sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := r.ReadString('\n')
		line2, _ := r.ReadString('\n')
		first <- line + line2
	}()
	select {
	case ev := <-first:
		if !strings.Contains(ev, `{"n":1}`) {
			t.Fatalf("first event %q", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first event did not arrive while the upstream was still streaming")
	}
	e.up.ReleaseSSE()
	rest, _ := r.ReadString(0)
	if !strings.Contains(rest, `{"n":2}`) {
		t.Fatalf("rest of stream %q", rest)
	}
}

// Acceptance 5: with rotation and family revocation on reuse, restarts
// (graceful and SIGKILL) continue from the stored refresh token: no reuse
// detected, requests succeed, the stored file is private.
func TestRotationSurvivesRestartAndKill(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true, AccessTTL: 30 * time.Second},
		fakeoauth.UpstreamOptions{})
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.gatewaySite("grant refresh_token", "refresh_token {env.TEST_SEED}")
	envs := append(e.secretEnv(), "TEST_SEED="+seed)
	c := startCaddy(t, site, caddyOptions{Env: envs})

	mustOK := func(step string) {
		t.Helper()
		if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
			t.Fatalf("%s: %d %s\n%s", step, status, body, tail(c.Logs(), 30))
		}
	}
	rotate := func(step string) {
		t.Helper()
		e.as.InvalidateAccessTokens()
		mustOK(step)
	}
	mustOK("first request")
	rotate("after first rotation")
	c.Restart(envs...)
	mustOK("after graceful restart")
	rotate("rotation after restart")
	c.Kill()
	c.start(envs)
	mustOK("after SIGKILL")
	rotate("rotation after SIGKILL")
	c.Restart(envs...)
	mustOK("after second restart")

	if n := e.as.ReuseDetections(); n != 0 {
		t.Fatalf("reuse detections = %d, want 0", n)
	}
	if n := e.as.TokenRequests("refresh_token"); n != 4 {
		t.Errorf("refresh requests = %d, want 4 (initial + 3 rotations; restarts adopt the stored token)", n)
	}
	files, _ := filepath.Glob(filepath.Join(c.dataDir, "caddy", "oauth_gateway", "credentials", "*.json"))
	if len(files) != 1 {
		t.Fatalf("credential files: %v", files)
	}
	fi, _ := os.Stat(files[0])
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %o, want 600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(files[0])
	if bytes.Contains(raw, []byte(seed)) {
		t.Error("the spent seed is still stored after rotation")
	}
	assertNoSecrets(t, c.Logs(), e.secrets(seed)...)
}

// Changing the configured seed replaces the stored credential.
func TestNewSeedReplacesStoredCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true}, fakeoauth.UpstreamOptions{})
	seed1 := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.gatewaySite("grant refresh_token", "refresh_token {env.TEST_SEED}")
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed1)})
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatal("first request failed")
	}
	seed2 := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	c.Restart(append(e.secretEnv(), "TEST_SEED="+seed2)...)
	e.as.InvalidateAccessTokens()
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("after new seed: %d %s", status, body)
	}
	if e.as.ReuseDetections() != 0 {
		t.Fatal("reuse detected")
	}
	if got := debugLines(c.Logs(), "configured refresh token changed"); got != 1 {
		t.Errorf("seed replacement not logged once (%d)", got)
	}
}

// Acceptance 6: a dead credential gets a clear error and the token
// endpoint is not hammered; flaky endpoints are retried.
func TestDeadCredentialIsNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	seed := e.as.IssueRefreshToken(e.clientID, nil)
	site := e.gatewaySite("grant refresh_token", "refresh_token {env.TEST_SEED}")
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	get(t, c.URL("/echo"))
	e.as.RevokeAll()
	before := e.as.TokenRequests("")
	for i := 0; i < 20; i++ {
		status, body, hdr := get(t, c.URL("/echo"))
		if status != http.StatusBadGateway {
			t.Fatalf("request %d: status %d %s, want 502", i, status, body)
		}
		var oe map[string]string
		if err := json.Unmarshal(body, &oe); err != nil || oe["error"] != "invalid_grant" || !strings.Contains(oe["error_description"], "credential ") {
			t.Fatalf("body %s, want an RFC 6749 invalid_grant naming the credential", body)
		}
		if hdr.Get("Cache-Control") != "no-store" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("headers %v", hdr)
		}
	}
	if n := e.as.TokenRequests("") - before; n != 1 {
		t.Fatalf("token requests for a dead credential = %d, want 1", n)
	}
	assertNoSecrets(t, c.Logs(), e.secrets(seed)...)
}

func TestTransientTokenEndpointFailuresAreRetried(t *testing.T) {
	// Serial (no t.Parallel): it counts the token requests made while the
	// gateway backs off after a failed refresh (1 s), so the ten requests
	// it sends meanwhile must fit into that second.
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	// Two failures (an HTML 502 from a CDN, a 429), then success: one
	// request, retried within the refresh.
	e.as.FailNext(1, http.StatusBadGateway, "<html>bad gateway</html>", "text/html", nil)
	e.as.FailNext(1, http.StatusTooManyRequests, `{"error":"slow_down"}`, "application/json", http.Header{"Retry-After": {"1"}})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	if n := e.as.TokenRequests(""); n != 3 {
		t.Fatalf("token requests = %d, want 3", n)
	}

	// A longer outage: clients get 503 temporarily_unavailable with
	// Retry-After, the endpoint is not hit per request, and service
	// recovers by itself.
	e.as.InvalidateAccessTokens()
	e.as.FailNext(3, http.StatusServiceUnavailable, "", "text/plain", nil)
	before := e.as.TokenRequests("")
	status, body, hdr := get(t, c.URL("/echo"))
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "temporarily_unavailable") {
		t.Fatalf("during outage: %d %s %v", status, body, hdr)
	}
	for i := 0; i < 10; i++ {
		get(t, c.URL("/echo"))
	}
	if n := e.as.TokenRequests("") - before; n != 3 {
		t.Fatalf("token requests during backoff = %d, want 3 (one refresh's attempts)", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, _ := get(t, c.URL("/echo"))
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not recover: %d", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}
