package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsClient is a client with opts that trusts srv's certificate.
func tlsClient(srv *httptest.Server, opts Options) *Client {
	c := NewClient(opts)
	c.httpClient.Transport.(*http.Transport).TLSClientConfig = &tls.Config{
		RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
	}
	return c
}

// tlsDocServer serves, over TLS, the documents returned by doc for the
// paths it knows (origin is the server's https origin).
func tlsDocServer(t *testing.T, doc func(origin, path string) string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := doc(srv.URL, r.URL.Path)
		if body == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Item 1: every endpoint the gateway contacts or sends a user to must be
// https unless http is allowed; a document naming an http one is refused
// as a whole, with an error that names the field and the way to allow it.
func TestHTTPEndpointsNeedAllowHTTP(t *testing.T) {
	for _, tc := range []struct {
		field string
		// an empty field: the document is all https and accepted
	}{{"token_endpoint"}, {"authorization_endpoint"}, {"registration_endpoint"}, {""}} {
		name := tc.field
		if name == "" {
			name = "all https"
		}
		t.Run(name, func(t *testing.T) {
			srv := tlsDocServer(t, func(origin, path string) string {
				if path != "/.well-known/oauth-authorization-server" {
					return ""
				}
				url := func(field, p string) string {
					if field == tc.field {
						return strings.Replace(origin, "https://", "http://", 1) + p
					}
					return origin + p
				}
				return fmt.Sprintf(`{"issuer":%q,"token_endpoint":%q,"authorization_endpoint":%q,"registration_endpoint":%q,
					"revocation_endpoint":"http://127.0.0.1:1/revoke","jwks_uri":"http://127.0.0.1:1/jwks"}`,
					origin, url("token_endpoint", "/token"), url("authorization_endpoint", "/authorize"), url("registration_endpoint", "/register"))
			})
			strict := tlsClient(srv, Options{AllowPrivate: true})
			m, err := strict.AuthServer(context.Background(), srv.URL)
			if tc.field == "" {
				// revocation_endpoint (left out by the gateway when
				// http) and jwks_uri (never fetched) do not refuse a
				// document.
				if err != nil || m.RegistrationEndpoint != srv.URL+"/register" {
					t.Fatalf("all-https document: %v %+v", err, m)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || m != nil {
				t.Fatalf("http %s without AllowHTTP: %v (document %+v)", tc.field, err, m)
			}
			for _, want := range []string{tc.field, "http://127.0.0.1", "insecure_allow_http"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			// Allowed with AllowHTTP.
			if _, err := tlsClient(srv, Options{AllowPrivate: true, AllowHTTP: true}).AuthServer(context.Background(), srv.URL); err != nil {
				t.Fatalf("with AllowHTTP: %v", err)
			}
		})
	}
}

// Item 1: protected resource metadata naming an http authorization server
// is refused (a validation failure, not a transient error) unless http is
// allowed.
func TestHTTPAuthorizationServerNeedsAllowHTTP(t *testing.T) {
	srv := tlsDocServer(t, func(origin, path string) string {
		if path != "/.well-known/oauth-protected-resource/mcp" {
			return ""
		}
		return fmt.Sprintf(`{"resource":"%s/mcp","authorization_servers":[%q,"http://127.0.0.1:1/as"]}`, origin, origin)
	})
	_, _, err := tlsClient(srv, Options{AllowPrivate: true}).ProtectedResource(context.Background(), srv.URL+"/mcp", nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "authorization_servers" || !strings.Contains(err.Error(), "insecure_allow_http") {
		t.Fatalf("http authorization server without AllowHTTP: %v", err)
	}
	m, _, err := tlsClient(srv, Options{AllowPrivate: true, AllowHTTP: true}).ProtectedResource(context.Background(), srv.URL+"/mcp", nil)
	if err != nil || len(m.AuthorizationServers) != 2 {
		t.Fatalf("with AllowHTTP: %v %+v", err, m)
	}
}

// Item 2: every special-purpose range that is not globally reachable is
// blocked; IPv4 embedded in IPv6 (mapped, NAT64) is judged as IPv4.
func TestSpecialPurposeAddressesBlocked(t *testing.T) {
	for _, tc := range []struct{ rng, addr string }{
		{"0.0.0.0/8 this network", "0.1.2.3"},
		{"0.0.0.0/32", "0.0.0.0"},
		{"10.0.0.0/8 private", "10.20.30.40"},
		{"100.64.0.0/10 shared (CGNAT)", "100.127.255.254"},
		{"127.0.0.0/8 loopback", "127.3.2.1"},
		{"169.254.0.0/16 link-local (cloud metadata)", "169.254.169.254"},
		{"172.16.0.0/12 private", "172.31.255.255"},
		{"192.0.0.0/24 IETF protocol assignments", "192.0.0.170"},
		{"192.0.2.0/24 TEST-NET-1", "192.0.2.1"},
		{"192.88.99.0/24 6to4 relay anycast", "192.88.99.1"},
		{"192.168.0.0/16 private", "192.168.1.1"},
		{"198.18.0.0/15 benchmarking", "198.19.255.255"},
		{"198.51.100.0/24 TEST-NET-2", "198.51.100.7"},
		{"203.0.113.0/24 TEST-NET-3", "203.0.113.9"},
		{"224.0.0.0/4 multicast", "239.255.255.250"},
		{"240.0.0.0/4 reserved", "240.0.0.1"},
		{"255.255.255.255/32 limited broadcast", "255.255.255.255"},
		{"::/128 unspecified", "::"},
		{"::1/128 loopback", "::1"},
		{"::ffff:0:0/96 IPv4-mapped (private IPv4)", "::ffff:10.0.0.1"},
		{"::ffff:0:0/96 IPv4-mapped (metadata)", "::ffff:169.254.169.254"},
		{"64:ff9b::/96 NAT64 (loopback IPv4)", "64:ff9b::7f00:1"},
		{"64:ff9b::/96 NAT64 (private IPv4)", "64:ff9b::192.168.0.1"},
		{"64:ff9b:1::/48 local-use NAT64", "64:ff9b:1::808:808"},
		{"100::/64 discard-only", "100::1"},
		{"100:0:0:1::/64 dummy prefix", "100:0:0:1::1"},
		{"2001::/23 IETF protocol assignments", "2001:1ff::1"},
		{"2001::/32 Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
		{"2001:2::/48 benchmarking", "2001:2::1"},
		{"2001:db8::/32 documentation", "2001:db8::1"},
		{"2002::/16 6to4 (private IPv4)", "2002:c0a8:101::1"},
		{"2002::/16 6to4 (public IPv4)", "2002:808:808::1"},
		{"3fff::/20 documentation", "3fff::1"},
		{"fc00::/7 unique local", "fd12:3456::1"},
		{"fe80::/10 link-local", "febf::1"},
		{"fec0::/10 site-local (deprecated)", "fec0::1"},
		{"ff00::/8 multicast", "ff0e::1"},
		{"::/96 IPv4-compatible (loopback)", "::127.0.0.1"},
		{"::/96 IPv4-compatible (public)", "::8.8.8.8"},
		{"5f00::/16 SRv6 SIDs (outside 2000::/3)", "5f00::1"},
	} {
		if !IsPrivateAddr(netip.MustParseAddr(tc.addr)) {
			t.Errorf("%s: %s is not blocked", tc.rng, tc.addr)
		}
	}
	for _, a := range []string{
		"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "192.0.3.1",
		"198.17.255.255", "198.20.0.1", "223.255.255.254", "::ffff:8.8.8.8",
		"2606:4700::1111", "2001:4860:4860::8888", "2001:200::1", "2a00:1450:4001::200e",
		"64:ff9b::808:808", // NAT64 of a public address
	} {
		if IsPrivateAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s (public) is blocked", a)
		}
	}
	// The dialer refuses them before connecting.
	c := NewClient(Options{AllowHTTP: true, Timeout: 2 * time.Second})
	for _, host := range []string{"198.18.0.1", "203.0.113.9", "[64:ff9b::7f00:1]", "[::127.0.0.1]"} {
		_, err := c.AuthServer(context.Background(), "http://"+host)
		if !errors.Is(err, ErrBlockedDestination) {
			t.Errorf("%s: %v, want a blocked destination", host, err)
		}
	}
}

// stallServer serves an authorization server document for its own
// origin, but only once release is closed; started counts requests
// that arrived.
func stallServer(t *testing.T) (srv *httptest.Server, started chan struct{}, release func(), hits *atomic.Int64) {
	t.Helper()
	started = make(chan struct{}, 16)
	gate := make(chan struct{})
	hits = new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		started <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":"%s/token"}`, "http://"+r.Host, "http://"+r.Host)
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release) // runs first: the handler returns, Close does not wait
	return srv, started, release, hits
}

// waitFor fails the test unless ch delivers within a generous bound
// (something that should happen at once).
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// doneWatcher tells when Done is first asked for: a caller of get does
// so only once it has joined the fetch (DoChan) and waits for it.
type doneWatcher struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (d *doneWatcher) Done() <-chan struct{} {
	d.once.Do(func() { close(d.asked) })
	return d.Context.Done()
}

func watchDone(parent context.Context) (context.Context, <-chan struct{}) {
	d := &doneWatcher{Context: parent, asked: make(chan struct{})}
	return d, d.asked
}

// Item 3: callers share one fetch; one whose context ends stops waiting
// at once (the caller that started the fetch, or one that joined it), and
// its leaving does not fail the others.
func TestCancelledCallerStopsWaitingOthersDoNot(t *testing.T) {
	srv, started, release, hits := stallServer(t)
	c := localClient()

	type result struct {
		m   *AuthServerMetadata
		err error
	}
	call := func(ctx context.Context) <-chan result {
		ch := make(chan result, 1)
		go func() {
			m, err := c.AuthServer(ctx, srv.URL)
			ch <- result{m, err}
		}()
		return ch
	}
	starterCtx, cancelStarter := context.WithCancel(context.Background())
	starter := call(starterCtx)
	waitFor(t, started, "the shared fetch to reach the server")
	joinerCtx, cancelJoiner := context.WithCancel(context.Background())
	joinerCtx, joinerWaits := watchDone(joinerCtx)
	joiner := call(joinerCtx)
	patientCtx, patientWaits := watchDone(context.Background())
	patient := call(patientCtx)
	waitFor(t, joinerWaits, "the joiner to wait for the shared fetch")
	waitFor(t, patientWaits, "the patient caller to wait for the shared fetch")

	for _, tc := range []struct {
		name   string
		cancel context.CancelFunc
		ch     <-chan result
	}{{"joiner", cancelJoiner, joiner}, {"starter", cancelStarter, starter}} {
		tc.cancel()
		r := waitFor(t, tc.ch, "the cancelled "+tc.name+" to return")
		if !errors.Is(r.err, context.Canceled) || r.m != nil {
			t.Fatalf("cancelled %s: %+v, want context.Canceled", tc.name, r)
		}
	}
	select {
	case r := <-patient:
		t.Fatalf("a caller returned before the server answered: %+v", r)
	default:
	}

	release()
	r := waitFor(t, patient, "the patient caller's document")
	if r.err != nil || r.m.Issuer != srv.URL {
		t.Fatalf("patient caller: %+v", r)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (shared)", n)
	}
}

// Item 3: a caller whose context is cancelled while alone on a stalled
// fetch returns at once; the fetch itself is bounded by Timeout.
func TestSharedFetchIsBounded(t *testing.T) {
	srv, started, _, _ := stallServer(t)
	c := localClient() // a 10 s fetch timeout: only the cancellation ends this wait

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.AuthServer(ctx, srv.URL)
		done <- err
	}()
	waitFor(t, started, "the fetch to reach the server")
	cancel()
	if err := waitFor(t, done, "the cancelled caller"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}

	// Nobody cancels: the stalled server is given up on after Timeout
	// per candidate URL (a miss), not waited for forever.
	c2 := NewClient(Options{AllowHTTP: true, AllowPrivate: true, Timeout: 200 * time.Millisecond})
	t0 := time.Now()
	go func() {
		_, err := c2.AuthServer(context.Background(), srv.URL)
		done <- err
	}()
	if err := waitFor(t, done, "the bounded fetch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stalled server: %v, want ErrNotFound", err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Fatalf("returned after %v, before the timeout", d)
	}
}
