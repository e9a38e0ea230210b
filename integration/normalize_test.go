package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// quirkyAS answers like Slack's and GitHub's token endpoints: a fixed
// success for client_credentials, HTTP 200 error bodies otherwise.
func quirkyAS(t *testing.T) (*httptest.Server, []byte) {
	success := []byte(`{"ok":true,"access_token":"xoxb-fixed","token_type":"bot","expires_in":43200,"scope":"chat:write"}` + "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		switch r.PostForm.Get("grant_type") {
		case "client_credentials":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write(success)
		case "refresh_token": // Slack
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write([]byte(`{"ok":false,"error":"invalid_refresh_token"}`))
		default: // GitHub, form-encoded, HTTP 200
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
			_, _ = w.Write([]byte(`error=incorrect_client_credentials&error_description=The+client_id+and%2For+client_secret+passed+are+incorrect.`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, success
}

func postForm(t *testing.T, u string, form url.Values) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

// Issue 4, acceptance 3: behind oauth_normalize a Slack-style 200 error
// becomes 400 invalid_grant, GitHub's form error becomes 401
// invalid_client, and a good token response passes byte-identical.
func TestOAuthNormalizeRewritesVendorErrors(t *testing.T) {
	t.Parallel()
	as, success := quirkyAS(t)
	c := startCaddy(t, fmt.Sprintf("\toauth_normalize\n\treverse_proxy %s", strings.TrimPrefix(as.URL, "http://")), caddyOptions{})

	status, body, hdr := postForm(t, c.URL("/api/oauth.v2.access"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"xoxe-1-secret"}})
	var oe map[string]any
	if status != http.StatusBadRequest || json.Unmarshal(body, &oe) != nil || oe["error"] != "invalid_grant" {
		t.Fatalf("slack error: %d %s", status, body)
	}
	if hdr.Get("Cache-Control") != "no-store" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("headers %v", hdr)
	}

	status, body, hdr = postForm(t, c.URL("/login/oauth/access_token"), url.Values{"grant_type": {"authorization_code"}, "code": {"x"}})
	if status != http.StatusUnauthorized || !strings.Contains(string(body), `"error":"invalid_client"`) || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("github error: %d %s %v", status, body, hdr)
	}

	status, body, _ = postForm(t, c.URL("/api/oauth.v2.access"), url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusOK || !bytes.Equal(body, success) {
		t.Fatalf("success changed: %d %q", status, body)
	}
	assertNoSecrets(t, c.Logs(), "xoxe-1-secret", "xoxb-fixed")
}

// With upstream_errors slack, an HTTP 200 token_expired is refreshed and
// replayed; the client sees only the success.
func TestSlackPresetRefreshesOn200TokenExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{SlackErrors: true})
	c := startCaddy(t, e.gatewaySite("upstream_errors slack"), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/echo"))
	e.as.InvalidateAccessTokens()
	status, body, _ := get(t, c.URL("/echo"))
	var r map[string]any
	if status != http.StatusOK || json.Unmarshal(body, &r) != nil || r["ok"] != true {
		t.Fatalf("status %d %s", status, body)
	}
	if n := e.as.TokenRequests(""); n != 2 {
		t.Fatalf("token requests %d, want 2", n)
	}
	// Without the preset the same body passes through untouched.
	c2 := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	get(t, c2.URL("/echo"))
	e.as.InvalidateAccessTokens()
	_, body, _ = get(t, c2.URL("/echo"))
	if !strings.Contains(string(body), "token_expired") {
		t.Fatalf("without preset: %s", body)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}

// An upstream that keeps rejecting (here: tokens bound to another
// resource) gets one refresh and one replay; the final bare 401 reaches
// the client as an RFC 6750 error with a Bearer challenge.
func TestPersistent401ReachesClientNormalized(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{Challenge: fakeoauth.ChallengeBare})
	site := strings.Replace(e.gatewaySite(), "resource       "+e.up.Resource(), "resource       "+e.up.URL()+"/other", 1)
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	req, _ := http.NewRequest(http.MethodPost, c.URL("/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	status, body, hdr := do(t, req)
	if status != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
		t.Fatalf("status %d challenge %q", status, hdr.Get("WWW-Authenticate"))
	}
	if !strings.Contains(string(body), `"error":"invalid_token"`) {
		t.Fatalf("body %s", body)
	}
	if _, u, _ := e.up.Counts(); u != 2 {
		t.Fatalf("upstream 401s %d, want 2 (original + one replay)", u)
	}
	if n := e.as.TokenRequests(""); n != 2 {
		t.Fatalf("token requests %d, want 2", n)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}
