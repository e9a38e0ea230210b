package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
)

// stalledIssuer is an authorization server whose metadata answers only
// once release is called; started receives one value per request.
func stalledIssuer(t *testing.T) (srv *httptest.Server, started chan struct{}, release func(), hits *atomic.Int64) {
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
		fmt.Fprintf(w, `{"issuer":"http://%s","token_endpoint":"http://%s/token"}`, r.Host, r.Host)
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release) // runs first, so that Close does not wait for the handler
	return srv, started, release, hits
}

func stalledResolver(srv *httptest.Server) *resolver {
	return &resolver{
		client:   discovery.NewClient(discovery.Options{AllowHTTP: true, AllowPrivate: true}),
		resource: srv.URL + "/mcp", issuer: srv.URL, logger: zap.NewNop(),
	}
}

type resolved struct {
	ep  *endpoints
	err error
}

func resolveAsync(r *resolver, ctx context.Context) <-chan resolved {
	ch := make(chan resolved, 1)
	go func() {
		ep, err := r.resolve(ctx)
		ch <- resolved{ep, err}
	}()
	return ch
}

// within fails the test unless ch delivers within a generous bound (for
// something that should happen at once).
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// doneWatcher tells when Done is first asked for: resolve does so only
// once the caller has joined the shared discovery (DoChan) and waits.
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

// The caller whose request started a discovery goes away: it stops
// waiting at once, and the discovery goes on for the callers sharing it.
func TestResolveCallerCancellation(t *testing.T) {
	srv, started, release, hits := stalledIssuer(t)
	r := stalledResolver(srv)

	ctx, cancel := context.WithCancel(context.Background())
	starter := resolveAsync(r, ctx)
	within(t, started, "the metadata fetch to reach the server")
	otherCtx, otherWaits := watchDone(context.Background())
	other := resolveAsync(r, otherCtx)
	within(t, otherWaits, "the other caller to wait for the shared discovery")

	cancel()
	res := within(t, starter, "the cancelled caller to return")
	if !errors.Is(res.err, context.Canceled) || res.ep != nil {
		t.Fatalf("cancelled caller: %+v, want context.Canceled", res)
	}
	select {
	case res := <-other:
		t.Fatalf("the other caller returned before the server answered: %+v", res)
	default:
	}

	release()
	res = within(t, other, "the other caller's endpoints")
	if res.err != nil || res.ep.TokenEndpoint != srv.URL+"/token" {
		t.Fatalf("other caller: %+v", res)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("metadata fetches = %d, want 1 (shared)", n)
	}
	// Cached for the next caller, whatever its context.
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := r.resolve(done); err != nil {
		t.Fatalf("cached endpoints: %v", err)
	}
}

// Nobody cancels and the metadata server never answers: the shared
// discovery gives up after its own bound, not the fetch timeout of every
// candidate URL in turn.
func TestResolveIsBounded(t *testing.T) {
	srv, _, _, _ := stalledIssuer(t)
	r := stalledResolver(srv)
	r.timeout = 300 * time.Millisecond
	t0 := time.Now()
	res := within(t, resolveAsync(r, context.Background()), "the bounded discovery")
	if !errors.Is(res.err, context.DeadlineExceeded) {
		t.Fatalf("stalled discovery: %+v, want a deadline error", res)
	}
	if d := time.Since(t0); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v, want about 300ms", d)
	}
}
