package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

const grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// newExchangeGateway is a token_exchange gateway in front of a fake
// authorization server that knows the given subject tokens (token ->
// subject); cfg adjusts the configuration and options.
func newExchangeGateway(t *testing.T, subjects map[string]string, cfg func(*Config, *Options)) (*Gateway, *fakeoauth.AuthServer, *observer.ObservedLogs) {
	t.Helper()
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.AddClient("c1", "s1")
	for tok, sub := range subjects {
		as.AddSubjectToken(tok, sub)
	}
	m, err := tokenstore.NewManager(tokenstore.NewMemoryBackend(), nil, zap.NewNop(), tokenstore.Options{DecodeKey: DecodeDPoPKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	c := Config{Resource: "http://upstream.test/mcp", TokenEndpoint: as.TokenURL(), ClientID: "c1", ClientSecret: "s1",
		InsecureAllowHTTP: true, Grant: tokenstore.GrantTokenExchange, SubjectToken: "{http.request.header.Authorization}"}
	core, logs := observer.New(zapcore.DebugLevel)
	opts := Options{Manager: m, Logger: zap.New(core),
		SubjectToken:       func(r *http.Request) string { return r.Header.Get("Authorization") },
		SubjectTokenHeader: "Authorization"}
	if cfg != nil {
		cfg(&c, &opts)
	}
	g, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, as, logs
}

// exchangeAs sends one request with subject token tok from remote.
func exchangeAs(t *testing.T, g *Gateway, remote, tok string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/echo", nil)
	r.RemoteAddr = remote
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	if err := g.Serve(w, r, okHandler{}); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return w
}

// check429 asserts a throttled answer: 429, Retry-After, an OAuth JSON
// error naming the limit.
func check429(t *testing.T, w *httptest.ResponseRecorder, scope string) {
	t.Helper()
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d %s, want 429", w.Code, w.Body)
	}
	if s, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q, want a positive number of seconds", w.Header().Get("Retry-After"))
	}
	var body oauthErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("body %s (%s) is not a JSON error: %v", w.Body, w.Header().Get("Content-Type"), err)
	}
	want := "from this client"
	if scope == scopeCredential {
		want = "from all clients together"
	}
	if body.Error != "temporarily_unavailable" || !strings.Contains(body.ErrorDescription, want) {
		t.Fatalf("body %+v, want temporarily_unavailable naming %q", body, want)
	}
}

// 1,000 distinct junk subject tokens from one client: at most
// burst + rate × elapsed exchanges reach the authorization server (the
// defaults: 4 + 2/s); the rest get 429. Another client is still served;
// a subject token remembered as refused, and a cached exchanged token,
// are answered without counting. One WARN line, no subject token in any.
func TestExchangeJunkFromOneClientIsBounded(t *testing.T) {
	g, as, logs := newExchangeGateway(t, map[string]string{"good-token-of-erin": "erin"}, nil)
	if g.ExchangeClientRate != 2 || g.ExchangeClientBurst != 4 || g.ExchangeRate != 20 || g.ExchangeBurst != 40 {
		t.Fatalf("defaults %v/%d per client %v/%d", g.ExchangeRate, g.ExchangeBurst, g.ExchangeClientRate, g.ExchangeClientBurst)
	}
	throttledBefore := counterValue(throttledClient)

	junk := make([]string, 1000)
	for i := range junk {
		junk[i] = fmt.Sprintf("junk-subject-token-%04d", i)
	}
	start := time.Now()
	var mu sync.Mutex
	statuses := map[int]int{}
	refused := "" // a junk token the authorization server refused
	var wg sync.WaitGroup
	next := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tok := range next {
				w := exchangeAs(t, g, "192.0.2.7:40000", tok)
				if w.Code == http.StatusTooManyRequests {
					check429(t, w, scopeClient)
				}
				mu.Lock()
				statuses[w.Code]++
				if w.Code == http.StatusUnauthorized {
					refused = tok
				}
				mu.Unlock()
			}
		}()
	}
	for _, tok := range junk {
		next <- tok
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	exchanges := as.TokenRequests(grantTypeTokenExchange)
	bound := 4 + int(2*elapsed.Seconds())
	t.Logf("1,000 junk subject tokens in %v: %d exchanges (bound %d), answers %v", elapsed, exchanges, bound, statuses)
	if exchanges > bound || exchanges < 1 {
		t.Fatalf("%d exchanges reached the authorization server in %v, want at most %d", exchanges, elapsed, bound)
	}
	if statuses[http.StatusUnauthorized] != exchanges || statuses[http.StatusTooManyRequests] != 1000-exchanges {
		t.Fatalf("answers %v: want %d refusals (401) and the rest 429", statuses, exchanges)
	}
	if got := counterValue(throttledClient) - throttledBefore; int(got) != 1000-exchanges {
		t.Errorf("exchanges_throttled_total{scope=client} grew by %v, want %d", got, 1000-exchanges)
	}

	// A refused subject token is answered from memory (401), even with
	// the client's bucket empty, and costs nothing.
	if w := exchangeAs(t, g, "192.0.2.7:40001", refused); w.Code != http.StatusUnauthorized {
		t.Fatalf("a remembered refusal: %d %s, want 401 from memory", w.Code, w.Body)
	}

	// Another client is served, its exchanged token then from the cache:
	// 50 more requests, no exchange and no throttling.
	for i := range 51 {
		if w := exchangeAs(t, g, "198.51.100.9:5000", "good-token-of-erin"); w.Code != http.StatusOK {
			t.Fatalf("request %d of another client: %d %s", i, w.Code, w.Body)
		}
	}
	if n := as.TokenRequests(grantTypeTokenExchange) - exchanges; n != 1 {
		t.Fatalf("%d exchanges for another client's 51 requests, want 1", n)
	}

	var warns int
	for _, e := range logs.All() {
		if e.Level == zapcore.WarnLevel && strings.Contains(e.Message, "throttled") {
			warns++
			if e.ContextMap()["client"] != "192.0.2.7" || e.ContextMap()["scope"] != scopeClient {
				t.Errorf("throttle log %v: want the client's address and scope", e.ContextMap())
			}
		}
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, tok := range append(junk, "good-token-of-erin") {
			if strings.Contains(line, tok) {
				t.Fatalf("a subject token reached the log: %s", line)
			}
		}
	}
	if warns != 1 {
		t.Fatalf("%d throttle WARN lines for %d throttled requests, want exactly 1 (at most one a minute)", warns, 1000-exchanges)
	}
}

// The gateway's own bucket bounds all clients together: each client
// may use its own bucket until the gateway's is empty; then every client
// needing an exchange gets 429 naming it, while cached tokens are still
// served. (Rates this low refill nothing during the test: exact counts.)
func TestExchangeCredentialBucketBoundsAllClients(t *testing.T) {
	subjects := map[string]string{}
	for i := range 20 {
		subjects[fmt.Sprintf("good-token-%02d", i)] = fmt.Sprintf("user%02d", i)
	}
	g, as, _ := newExchangeGateway(t, subjects, func(c *Config, _ *Options) {
		c.ExchangeRate, c.ExchangeBurst = 0.001, 10
		c.ExchangeClientRate, c.ExchangeClientBurst = 0.001, 3
	})
	throttledBefore := counterValue(throttledCredential)

	// Client A: 3 junk exchanges, then its own bucket is empty (client
	// scope) while the gateway's still holds 7.
	for i := range 3 {
		if w := exchangeAs(t, g, "192.0.2.1:1", fmt.Sprintf("junk-a-%d", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("client A's exchange %d: %d %s", i, w.Code, w.Body)
		}
	}
	check429(t, exchangeAs(t, g, "192.0.2.1:1", "junk-a-3"), scopeClient)

	// Client B is isolated from A: it gets a valid token, served from the
	// cache afterwards without counting.
	if w := exchangeAs(t, g, "192.0.2.2:1", "good-token-00"); w.Code != http.StatusOK {
		t.Fatalf("client B: %d %s", w.Code, w.Body)
	}
	for range 20 {
		if w := exchangeAs(t, g, "192.0.2.2:1", "good-token-00"); w.Code != http.StatusOK {
			t.Fatalf("client B's cached token: %d %s", w.Code, w.Body)
		}
	}
	// 6 more clients, one exchange each, empty the gateway's bucket
	// (3 + 1 + 6 = 10).
	for i := 1; i <= 6; i++ {
		if w := exchangeAs(t, g, fmt.Sprintf("192.0.2.%d:1", 10+i), fmt.Sprintf("good-token-%02d", i)); w.Code != http.StatusOK {
			t.Fatalf("client %d: %d %s", i, w.Code, w.Body)
		}
	}
	if n := as.TokenRequests(grantTypeTokenExchange); n != 10 {
		t.Fatalf("%d exchanges, want 10 (the gateway's burst)", n)
	}
	// Now a fresh client is refused for the gateway's bucket, and so is
	// one with tokens left in its own.
	check429(t, exchangeAs(t, g, "192.0.2.50:1", "good-token-10"), scopeCredential)
	check429(t, exchangeAs(t, g, "192.0.2.2:1", "good-token-11"), scopeCredential)
	if got := counterValue(throttledCredential) - throttledBefore; got != 2 {
		t.Errorf("exchanges_throttled_total{scope=credential} grew by %v, want 2", got)
	}
	// Cached tokens are still served; the refused clients' own buckets
	// kept their token (client B, refused for the gateway's bucket, is
	// still refused for the gateway's, not its own).
	for i := 1; i <= 6; i++ {
		if w := exchangeAs(t, g, fmt.Sprintf("192.0.2.%d:1", 10+i), fmt.Sprintf("good-token-%02d", i)); w.Code != http.StatusOK {
			t.Fatalf("client %d's cached token with the gateway's bucket empty: %d %s", i, w.Code, w.Body)
		}
	}
	check429(t, exchangeAs(t, g, "192.0.2.2:1", "good-token-12"), scopeCredential)
	if n := as.TokenRequests(grantTypeTokenExchange); n != 10 {
		t.Fatalf("%d exchanges, want still 10", n)
	}
}

// With a principal, the principal is the client: two users behind one
// address have a bucket each.
func TestExchangeClientIsThePrincipal(t *testing.T) {
	g, as, _ := newExchangeGateway(t, map[string]string{"good-token-of-frank": "frank"}, func(c *Config, o *Options) {
		c.Principal = "{http.request.header.X-User}"
		c.ExchangeClientRate, c.ExchangeClientBurst = 0.001, 1
		o.Principal = func(r *http.Request) string { return r.Header.Get("X-User") }
	})
	send := func(user, tok string) int {
		r := httptest.NewRequest(http.MethodGet, "/echo", nil)
		r.RemoteAddr = "203.0.113.5:1"
		r.Header.Set("X-User", user)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		if err := g.Serve(w, r, okHandler{}); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	if c := send("mallory", "junk-1"); c != http.StatusUnauthorized {
		t.Fatalf("mallory's first junk token: %d", c)
	}
	if c := send("mallory", "junk-2"); c != http.StatusTooManyRequests {
		t.Fatalf("mallory's second junk token: %d, want 429", c)
	}
	if c := send("frank", "good-token-of-frank"); c != http.StatusOK {
		t.Fatalf("frank behind the same address: %d", c)
	}
	if n := as.TokenRequests(grantTypeTokenExchange); n != 2 {
		t.Fatalf("%d exchanges, want 2", n)
	}
}

func TestExchangeClientKey(t *testing.T) {
	for _, c := range []struct{ principal, remote, want string }{
		{"", "192.0.2.1:443", "addr:192.0.2.1"},
		{"", "[::ffff:192.0.2.1]:443", "addr:192.0.2.1"},
		{"", "[2001:db8:1:2:3:4:5:6]:443", "addr:2001:db8:1:2::/64"},
		{"", "[2001:db8:1:2:ffff::1]:1", "addr:2001:db8:1:2::/64"},
		{"", "[fe80::1%eth0]:1", "addr:fe80::/64"},
		{"", "unix-socket", "addr:unix-socket"},
		{"alice", "192.0.2.1:443", "principal:alice"},
	} {
		if got := exchangeClient(c.principal, c.remote); got != c.want {
			t.Errorf("exchangeClient(%q, %q) = %q, want %q", c.principal, c.remote, got, c.want)
		}
	}
}

func TestExchangeRateValidation(t *testing.T) {
	base := Config{Resource: "https://api.example/v1", TokenEndpoint: "https://as.example/token", ClientID: "c",
		Grant: tokenstore.GrantTokenExchange, SubjectToken: "{http.request.header.Authorization}"}
	for _, c := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.ExchangeRate = -1 }, "exchange_rate: the rate must be a positive number"},
		{func(c *Config) { c.ExchangeClientBurst = -1 }, "exchange_rate_per_client: the burst must be a positive number"},
		{func(c *Config) { c.Grant, c.SubjectToken, c.ExchangeRate = "", "", 5 }, "exchange_rate: only with grant token_exchange or id_jag"},
		{func(c *Config) { c.Grant, c.SubjectToken, c.ExchangeClientBurst = "", "", 5 }, "exchange_rate_per_client: only with grant token_exchange or id_jag"},
	} {
		cfg := base
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want %q", err, c.want)
		}
	}
	cfg := base
	cfg.ExchangeRate = 0.25
	if err := cfg.Validate(); err != nil || cfg.ExchangeBurst != 1 {
		t.Fatalf("rate 0.25 without a burst: %v, burst %d, want 1", err, cfg.ExchangeBurst)
	}
	cfg = base
	cfg.ExchangeClientRate = 7.5
	if err := cfg.Validate(); err != nil || cfg.ExchangeClientBurst != 15 {
		t.Fatalf("rate 7.5 without a burst: %v, burst %d, want 15", err, cfg.ExchangeClientBurst)
	}
}
