package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Regression tests for issue 11 (adversarial review). Each one fails on
// the commit the review ran against.

// Finding 1: a credential pinned to AS-1 whose upstream now names AS-2.
// Revoke goes to AS-1 (the pinned issuer's own metadata), re-seeding
// keeps the pin, and AS-2 receives nothing.
func TestRevokeAndReseedKeepThePin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{IssuerPath: "/good", Rotate: true}, fakeoauth.UpstreamOptions{})
	evil, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{IssuerPath: "/evil"})
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	evil.AddClient(e.clientID, e.clientSecret) // it would accept the secret
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.discoverySite(e.up.Resource(), "grant refresh_token", "refresh_token {env.TEST_SEED}", "scope read", "discovery_allow_hosts 127.0.0.1")
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("first request: %d %s", status, body)
	}
	id := listCredentials(t, c)[0].ID

	e.up.AdvertiseIssuer(evil.Issuer())
	e.as.InvalidateAccessTokens()
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusBadGateway {
		t.Fatalf("after the upstream named another server: %d %s, want 502", status, body)
	}

	status, body := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/revoke", "")
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if got := strings.Join(e.as.Revocations(), ","); got != "refresh_token,access_token" {
		t.Fatalf("revocations at the pinned issuer: %q", got)
	}
	if n := len(evil.Revocations()); n != 0 {
		t.Fatalf("the other authorization server received %d revocations", n)
	}
	st := listCredentials(t, c)[0]
	if st.Issuer != e.as.Issuer() {
		t.Fatalf("pin after revoke: %q", st.Issuer)
	}

	// Re-seed by upload: the pin stays, the new token goes nowhere else.
	fresh := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	status, body = adminDo(t, c, http.MethodPut, "/oauth_gateway/credentials/"+id+"/refresh_token", fmt.Sprintf(`{"refresh_token":%q}`, fresh))
	if status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, body)
	}
	expectUntrusted(t, c, e.as.Issuer())
	if n := evil.TokenRequests(""); n != 0 {
		t.Fatalf("the other authorization server received %d token requests", n)
	}
	if st := listCredentials(t, c)[0]; st.Issuer != e.as.Issuer() {
		t.Fatalf("re-seed moved the pin to %q", st.Issuer)
	}

	// An operator's unpin names the new issuer; only then may it be used.
	status, body = adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/unpin", fmt.Sprintf(`{"issuer":%q}`, evil.Issuer()))
	if status != http.StatusOK {
		t.Fatalf("unpin: %d %s", status, body)
	}
	if st := listCredentials(t, c)[0]; st.Issuer != evil.Issuer() || st.State != "dead" {
		t.Fatalf("after unpin: %+v", st)
	}
	assertNoSecrets(t, c.Logs(), e.secrets(seed, fresh)...)
}

// Finding 2: a metadata URL with an IPv6 zone reaches nothing.
func TestZonedIPv6MetadataURLIsRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	var hits atomic.Int64
	target := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"resource":"https://mcp.gateway-test.invalid/mcp","authorization_servers":["http://[::1]/"]}`))
	})}
	go func() { _ = target.Serve(ln) }()
	defer target.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer resource_metadata="http://[::1%%25lo]:%d/.well-known/oauth-protected-resource"`, port))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer up.Close()
	c := startCaddy(t, fmt.Sprintf(`	oauth_gateway {
		resource       https://mcp.gateway-test.invalid/mcp
		client_id      c1
		client_secret  {env.TEST_CLIENT_SECRET}
		insecure_allow_http
	}
	reverse_proxy %s`, strings.TrimPrefix(up.URL, "http://")), caddyOptions{Env: []string{"TEST_CLIENT_SECRET=cs_zone_test_secret"}})
	for i := 0; i < 3; i++ {
		get(t, c.URL("/mcp"))
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the zoned address was reached %d times", n)
	}
	if debugLines(c.Logs(), "not allowed") == 0 {
		t.Fatalf("no log line names the blocked destination:\n%s", tail(c.Logs(), 20))
	}
}

// expvarHeap reads Caddy's live heap from the admin endpoint's expvar.
func expvarHeap(t *testing.T, c *caddyProc) uint64 {
	t.Helper()
	status, body := adminDo(t, c, http.MethodGet, "/debug/vars", "")
	var v struct {
		Memstats struct{ HeapAlloc uint64 } `json:"memstats"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &v) != nil {
		t.Fatalf("/debug/vars: %d", status)
	}
	return v.Memstats.HeapAlloc
}

// inFlight reads Caddy's gauge of the requests its HTTP server is
// handling (its site routes' handlers) right now.
func inFlight(t *testing.T, c *caddyProc) int {
	t.Helper()
	_, metrics, _ := get(t, c.AdminURL("/metrics"))
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^caddy_http_requests_in_flight\{[^}]*\} (\d+)$`).FindAllSubmatch(metrics, -1) {
		v, _ := strconv.Atoi(string(m[1]))
		n += v
	}
	return n
}

// Finding 3, as the review saw it: a working credential whose upstream
// answers every request 401 naming a new resource_metadata URL, each a
// 1 MB document that validates (right resource, right authorization
// server, max-age one day). Before: one fetch, one cached megabyte and one
// token request per request. Now: rediscovery is rate-limited, reactive
// refreshes are throttled and the cache is bounded.
func TestDiscoveryChurnIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	pad := strings.Repeat("x", 1<<20-300)
	var resource string
	var fetches, n atomic.Int64
	docs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=86400")
		fmt.Fprintf(w, `{"resource":%q,"authorization_servers":[%q],"pad":%q}`, resource, e.as.Issuer(), pad)
	}))
	defer docs.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource") {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"resource":%q,"authorization_servers":[%q]}`, resource, e.as.Issuer())
			return
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", resource_metadata="%s/prm/%d"`, docs.URL, n.Add(1)))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer up.Close()
	resource = up.URL + "/mcp"
	c := startCaddy(t, fmt.Sprintf(`	oauth_gateway {
		resource       %s
		client_id      %s
		client_secret  {env.TEST_CLIENT_SECRET}
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
	}
	reverse_proxy %s`, resource, e.clientID, strings.TrimPrefix(up.URL, "http://")), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/mcp"))
	before := expvarHeap(t, c)
	for i := 0; i < 100; i++ {
		get(t, c.URL("/mcp"))
	}
	if f := fetches.Load(); f > 3 {
		t.Fatalf("%d metadata fetches for 101 challenges naming new URLs, want at most 3 (rate-limited)", f)
	}
	if tr := e.as.TokenRequests(""); tr > 4 {
		t.Fatalf("%d token requests for 101 requests, want at most 4", tr)
	}
	grew := int64(expvarHeap(t, c)) - int64(before)
	t.Logf("101 requests: %d metadata fetches, %d token requests, heap %+d KiB", fetches.Load(), e.as.TokenRequests(""), grew>>10)
	if grew > 32<<20 {
		t.Fatalf("heap grew by %d MiB", grew>>20)
	}
}

// Finding 4: bodies that declare 1 MiB and send 10 bytes hold 10 bytes.
func TestReplayBufferGrowsWithTheBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/echo"))
	before := expvarHeap(t, c)
	const conns = 200
	var open []net.Conn
	defer func() {
		for _, cn := range open {
			cn.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		cn, err := net.Dial("tcp", strings.TrimPrefix(c.URL(""), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, cn)
		// The Host must be the site's, or Caddy answers without reaching
		// the handler.
		fmt.Fprintf(cn, "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n0123456789", strings.TrimPrefix(c.URL(""), "http://"), 1<<20)
	}
	// Wait until Caddy handles every request (its in-flight gauge): the
	// site's first handler is the gateway, which reads the body into its
	// replay buffer. Then let it read the first bytes: a buffer sized
	// from Content-Length would be allocated by then.
	deadline := time.Now().Add(10 * time.Second)
	for n := inFlight(t, c); n < conns; n = inFlight(t, c) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests reached the gateway within 10s", n, conns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var grew int64
	for range 4 {
		time.Sleep(250 * time.Millisecond)
		grew = int64(expvarHeap(t, c)) - int64(before)
		if grew > 100<<20 {
			break
		}
	}
	t.Logf("%d connections declaring 1 MiB and sending 10 bytes: heap %+d KiB", conns, grew>>10)
	if grew > 48<<20 {
		t.Fatalf("heap grew by %d MiB for %d connections that sent 10 bytes each", grew>>20, conns)
	}
}

// Finding 5: without issuer or trusted_issuers, a secret goes only to a
// discovered issuer on the resource's domain. The resource is on
// 127.0.0.1, the authorization server on "localhost": another host.
func TestSecretGoesOnlyToTrustedIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	e.as.SetOrigin(strings.Replace(e.as.URL(), "127.0.0.1", "localhost", 1))
	c := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1 localhost"), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusBadGateway || !strings.Contains(string(body), "trusted_issuers") {
		t.Fatalf("status %d %s, want 502 naming trusted_issuers", status, body)
	}
	if n := e.as.TokenRequests(""); n != 0 {
		t.Fatalf("token requests = %d, want 0", n)
	}
	if debugLines(c.Logs(), "not trusted", e.as.Issuer()) == 0 {
		t.Errorf("no log line names the issuer:\n%s", tail(c.Logs(), 10))
	}
	c2 := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1 localhost", "trusted_issuers "+e.as.Issuer()),
		caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c2.URL("/echo")); status != http.StatusOK {
		t.Fatalf("with trusted_issuers: %d %s\n%s", status, body, tail(c2.Logs(), 10))
	}
}

// Finding 6: a private resource does not open every private address:
// its own host and port only.
func TestPrivateResourceOpensOnlyItsOwnAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.discoverySite(e.up.Resource()), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusBadGateway {
		t.Fatalf("status %d %s, want 502 (the authorization server's port is not allowed)", status, body)
	}
	if e.as.MetadataFetches() != 0 || e.as.TokenRequests("") != 0 {
		t.Fatalf("another private port was contacted: metadata %d, token %d", e.as.MetadataFetches(), e.as.TokenRequests(""))
	}
	if e.up.MetadataFetches() == 0 {
		t.Fatal("the resource's own metadata was not fetched")
	}
}

// Finding 7: step-up only within the configured bound.
func TestStepUpStaysWithinTheBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{RequiredScopes: map[string][]string{"/admin": {"admin"}}})
	c := startCaddy(t, e.gatewaySite("scope read"), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/echo"))
	before := e.as.TokenRequests("")
	status, body, _ := get(t, c.URL("/admin/echo"))
	if status != http.StatusForbidden || !strings.Contains(string(body), "max_scope") {
		t.Fatalf("status %d %s, want the explanatory 403", status, body)
	}
	if n := e.as.TokenRequests("") - before; n != 0 {
		t.Fatalf("token requests for an unbounded scope: %d", n)
	}
}

// Finding 8: an upstream that rejects every token does not drive the
// token endpoint one to one.
func TestUnauthorizedStormIsThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer up.Close()
	site := strings.Replace(e.gatewaySite(), strings.TrimPrefix(e.up.URL(), "http://"), strings.TrimPrefix(up.URL, "http://"), 1)
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	for i := 0; i < 100; i++ {
		if status, _, _ := get(t, c.URL("/echo")); status != http.StatusUnauthorized {
			t.Fatalf("request %d: %d, want the upstream's 401", i, status)
		}
	}
	if n := e.as.TokenRequests(""); n > 3 {
		t.Fatalf("%d token requests for 100 rejected requests, want at most 3", n)
	}
	_, metrics, _ := get(t, c.AdminURL("/metrics"))
	if !strings.Contains(string(metrics), "caddy_oauth_gateway_reactive_refreshes_throttled_total") {
		t.Error("throttling not visible in the metrics")
	}
}
