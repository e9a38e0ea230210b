package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
)

// Issue 19, finding 1 (HIGH): the issuer binding of an
// authorization-code credential is read from the store, not from memory.
// alice consents at A; then the process restarts (file storage) or her
// next flow starts on another instance (Redis), and the resource's
// metadata now names B, on a host the trust rules allow. A flow that took
// its binding from memory (empty in both cases) went to B: B received
// the authorization request and then the code with the client's secret.
// B must receive nothing of A's, ever.

// secondServer starts authorization server B, which would accept the
// gateway's client credentials.
func (e *env) secondServer(t *testing.T) *fakeoauth.AuthServer {
	t.Helper()
	b, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{IssuerPath: "/b", Rotate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	b.AddClient(e.clientID, e.clientSecret)
	return b
}

// expectNoFlowAt starts alice's flow on c and asserts it does not go to
// b. Should it go there (the bug), the test plays it to its end, so
// that what b then receives is part of the failure.
func expectNoFlowAt(t *testing.T, c *caddyProc, b *fakeoauth.AuthServer) {
	t.Helper()
	resp, body := step(t, http.MethodGet, c.URL("/mcp/.oauth/start"), "alice", nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusFound && strings.HasPrefix(loc, b.Issuer()) {
		back, _ := step(t, http.MethodGet, consent(t, loc, "alice"), "alice", nil)
		t.Errorf("alice's flow went to the other authorization server (callback %d); it received %d token requests",
			back.StatusCode, b.TokenRequests(""))
	} else if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "bound to") {
		t.Errorf("start: %d %s, want 502 naming the binding", resp.StatusCode, body)
	}
	if n, a := b.TokenRequests(""), len(b.Authorizations()); n != 0 || a != 0 {
		t.Fatalf("the other authorization server received %d token requests and %d authorization requests", n, a)
	}
}

func TestIssuerBindingSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	b := e.secondServer(t)
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	if resp, body := connect(t, c.URL("/mcp/.oauth/start"), "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("consent at A: %d %s", resp.StatusCode, body)
	}

	c.Restart()
	e.up.AdvertiseIssuer(b.Issuer())
	expectNoFlowAt(t, c, b)
	// Her stored token still serves her, and the binding is A's.
	if resp, body := step(t, http.MethodGet, c.URL("/echo"), "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice after the refused flow: %d %s", resp.StatusCode, body)
	}
	for _, st := range listCredentials(t, c) {
		if st.Principal == "alice" && st.Issuer != e.as.Issuer() {
			t.Fatalf("alice's binding after the refused flow: %q, want %q", st.Issuer, e.as.Issuer())
		}
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}

func TestIssuerBindingHoldsAcrossTheFleet(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	b := e.secondServer(t)
	global := fmt.Sprintf("\toauth_gateway {\n\t\tstorage redis %s {\n\t\t\tkey_prefix bind%s\n\t\t}\n\t\tencryption_key {env.TEST_KEY}\n\t}", r.URL(), randomHex(4))
	// A fleet serves one public address: every instance's redirect_uri is
	// the first's.
	front := freePort(t)
	site := strings.ReplaceAll(e.perUserSite(t, e.confidentialClient()...), "127.0.0.1:{PORT}", fmt.Sprintf("127.0.0.1:%d", front))
	envs := append(e.secretEnv(), "TEST_KEY=AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=")
	first := startCaddy(t, site, caddyOptions{Global: global, Env: envs, Port: front})
	second := startCaddy(t, site, caddyOptions{Global: global, Env: envs})
	if resp, body := connect(t, first.URL("/mcp/.oauth/start"), "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("consent at A on the first instance: %d %s", resp.StatusCode, body)
	}

	e.up.AdvertiseIssuer(b.Issuer())
	expectNoFlowAt(t, second, b)
	assertNoSecrets(t, second.Logs(), e.secrets()...)
}
