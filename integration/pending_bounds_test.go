package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 19, finding 5: outstanding authorizations are bounded. One user
// starting 200 flows used to store 200 pending records (a link opened
// cross-site starts one); now a user keeps at most 5, and a handler at
// most max_pending_authorizations, beyond which a start is answered 503
// with Retry-After.
func TestPendingAuthorizationsAreBounded(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	site := fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:{PORT}/mcp/.oauth/callback
		principal      {http.request.header.X-User}
		client_id      %s
		client_secret  {env.TEST_CLIENT_SECRET}
		max_pending_authorizations 20
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
	}
	reverse_proxy %s`, e.up.Resource(), e.clientID, strings.TrimPrefix(e.up.URL(), "http://"))
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	start := c.URL("/mcp/.oauth/start")

	var first string
	for i := 0; i < 200; i++ {
		resp, body := step(t, http.MethodGet, start, "", nil, "X-User", "alice")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("start %d: %d %s", i, resp.StatusCode, body)
		}
		if i == 0 {
			first = resp.Header.Get("Location")
		}
	}
	if n := pendingRecords(t, c); n != 5 {
		t.Fatalf("pending records after 200 starts by one user: %d, want 5", n)
	}
	// Her first flow was replaced: its callback is refused, nothing is
	// exchanged.
	if resp, body := step(t, http.MethodGet, consent(t, first, "alice"), "", nil, "X-User", "alice"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback of a replaced flow: %d %s", resp.StatusCode, body)
	}

	// 20 for the handler: alice's 5 and 15 other users'; the next is 503.
	for i := 0; i < 15; i++ {
		if resp, body := step(t, http.MethodGet, start, "", nil, "X-User", fmt.Sprintf("user%d", i)); resp.StatusCode != http.StatusFound {
			t.Fatalf("start by user%d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := step(t, http.MethodGet, start, "", nil, "X-User", "mallory")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many authorizations") {
		t.Fatalf("start beyond the handler's bound: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := pendingRecords(t, c); n != 20 {
		t.Fatalf("pending records: %d, want 20", n)
	}
	// A completed flow frees its place.
	resp, _ = step(t, http.MethodGet, start, "", nil, "X-User", "alice")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("alice's start (replacing her oldest): %d", resp.StatusCode)
	}
	if back, body := step(t, http.MethodGet, consent(t, resp.Header.Get("Location"), "alice"), "", nil, "X-User", "alice"); back.StatusCode != http.StatusOK {
		t.Fatalf("alice's callback: %d %s", back.StatusCode, body)
	}
	if resp, body := step(t, http.MethodGet, start, "", nil, "X-User", "mallory"); resp.StatusCode != http.StatusFound {
		t.Fatalf("start after a flow completed: %d %s", resp.StatusCode, body)
	}
}

// pendingRecords counts the pending authorization records in c's data
// directory.
func pendingRecords(t *testing.T, c *caddyProc) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.dataDir, "caddy", "oauth_gateway", "credentials", "pending-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		if _, err := os.Stat(filepath.Join(c.dataDir, "caddy")); err != nil {
			t.Fatalf("no data directory at %s: %v", c.dataDir, err)
		}
	}
	return len(files)
}
