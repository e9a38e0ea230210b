package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// okHandler stands in for reverse_proxy: it answers 200 with a small body.
type okHandler struct{}

func (okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte(`{"ok":true}`))
	return err
}

// newTestGateway returns a Gateway whose credential holds a token from a
// real (fake) authorization server.
func newTestGateway(tb testing.TB, backend tokenstore.Backend) *Gateway {
	return newBenchGateway(tb, backend, false)
}

// newBenchGateway is newTestGateway, with DPoP-bound tokens when dpop.
func newBenchGateway(tb testing.TB, backend tokenstore.Backend, dpop bool) *Gateway {
	tb.Helper()
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(as.Close)
	as.AddClient("c1", "s1")
	m, err := tokenstore.NewManager(backend, nil, zap.NewNop(), tokenstore.Options{DecodeKey: DecodeDPoPKey})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	g, err := New(Config{Resource: "http://upstream.test/mcp", TokenEndpoint: as.TokenURL(), ClientID: "c1", ClientSecret: "s1",
		InsecureAllowHTTP: true, DPoP: dpop}, Options{Manager: m})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	tok, err := g.cred.Token(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if dpop && tok.Key == nil {
		tb.Fatal("the token is not DPoP-bound")
	}
	return g
}

// BenchmarkHotPathCachedToken is the gateway's per-request cost with a
// cached token, in front of a handler that answers 200.
func BenchmarkHotPathCachedToken(b *testing.B) {
	benchServe(b, newTestGateway(b, tokenstore.NewMemoryBackend()))
}

// BenchmarkHotPathDPoP is BenchmarkHotPathCachedToken with a DPoP-bound
// token: a new ES256 proof per request.
func BenchmarkHotPathDPoP(b *testing.B) {
	benchServe(b, newBenchGateway(b, tokenstore.NewMemoryBackend(), true))
}

// benchServe drives g in parallel with GET /echo.
func benchServe(b *testing.B, g *Gateway) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/echo", nil)
		for pb.Next() {
			w := newDiscardWriter()
			if err := g.Serve(w, r, okHandler{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBaselineStaticHeader is what a static `header_up Authorization`
// costs: set one header, call the next handler.
func BenchmarkBaselineStaticHeader(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/echo", nil)
		for pb.Next() {
			w := newDiscardWriter()
			r.Header.Set("Authorization", "Bearer static-token-value")
			if err := (okHandler{}).ServeHTTP(w, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// discardWriter is a minimal ResponseWriter, so the benchmark measures
// the handlers and not httptest's recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func newDiscardWriter() *discardWriter               { return &discardWriter{h: make(http.Header, 2)} }
func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(s int)           { d.status = s }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
