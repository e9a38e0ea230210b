package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 4, acceptance 2: a 403 insufficient_scope ends in a 200 carrying
// a token with both scopes; the widened scope set persists.
func TestStepUpOnInsufficientScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"admin"}}})
	c := startCaddy(t, e.gatewaySite("scope read", "max_scope read admin"), caddyOptions{Env: e.secretEnv()})

	status, body, _ := get(t, c.URL("/admin/echo"))
	if status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	got := decodeEcho(t, body).Scopes
	if strings.Join(got, " ") != "read admin" {
		t.Fatalf("token scopes %v, want read and admin", got)
	}
	if _, _, forbidden := e.up.Counts(); forbidden != 1 {
		t.Fatalf("upstream 403s = %d, want 1", forbidden)
	}
	reqs := e.as.Requests()
	if len(reqs) != 2 || reqs[1].Scope != "read admin" || reqs[1].Grant != "client_credentials" {
		t.Fatalf("token requests %+v", reqs)
	}
	// Later tokens keep the widened scope: a refresh after invalidation
	// asks for both again.
	e.as.InvalidateAccessTokens()
	if status, _, _ := get(t, c.URL("/admin/echo")); status != http.StatusOK {
		t.Fatalf("after refresh: %d", status)
	}
	if last := e.as.Requests()[len(e.as.Requests())-1]; last.Scope != "read admin" {
		t.Fatalf("scope not kept: %q", last.Scope)
	}
	if debugLines(c.Logs(), "stepped-up token") != 1 {
		t.Error("step-up replay not visible at debug level")
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}

// A refresh-token credential cannot widen scope: the client gets an
// explanatory 403 and the gateway does not loop on refresh.
func TestStepUpNotPossibleForRefreshGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"admin"}}})
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.gatewaySite("grant refresh_token", "refresh_token {env.TEST_SEED}")
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	get(t, c.URL("/echo"))
	before := e.as.TokenRequests("")

	status, body, hdr := get(t, c.URL("/admin/echo"))
	if status != http.StatusForbidden {
		t.Fatalf("status %d %s", status, body)
	}
	chs := discoveryChallenges(hdr)
	if chs.error != "insufficient_scope" || chs.scope != "read admin" {
		t.Fatalf("challenge %q: %+v", hdr.Get("WWW-Authenticate"), chs)
	}
	var oe map[string]string
	if json.Unmarshal(body, &oe) != nil || oe["error"] != "insufficient_scope" || !strings.Contains(oe["error_description"], "admin") {
		t.Fatalf("body %s", body)
	}
	if n := e.as.TokenRequests("") - before; n != 0 {
		t.Fatalf("token requests = %d, want 0 (no refresh loop)", n)
	}
	if _, _, forbidden := e.up.Counts(); forbidden != 1 {
		t.Fatalf("upstream 403s = %d, want 1", forbidden)
	}
}

// An authorization server that refuses the scope ends the step-up with a
// clear error.
func TestStepUpRefusedScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"admin"}}})
	e.as.AddClient(e.clientID, e.clientSecret, "read") // admin not allowed
	c := startCaddy(t, e.gatewaySite("scope read", "max_scope read admin"), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/admin/echo"))
	if status != http.StatusForbidden || !strings.Contains(string(body), "refused") {
		t.Fatalf("status %d %s", status, body)
	}
	// Ordinary requests still work with the original token.
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("after refused step-up: %d", status)
	}
}

type bearerChallenge struct{ error, scope string }

func discoveryChallenges(h http.Header) bearerChallenge {
	for _, ch := range challenge.Parse(h.Values("WWW-Authenticate")) {
		if ch.Scheme == "bearer" {
			return bearerChallenge{ch.Param("error"), ch.Param("scope")}
		}
	}
	return bearerChallenge{}
}
