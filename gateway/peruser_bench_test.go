package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// newPerUserGateway returns a gateway with one credential per user
// (principal from the X-User header), n users already authorized.
func newPerUserGateway(tb testing.TB, n int) *Gateway {
	tb.Helper()
	m, err := tokenstore.NewManager(tokenstore.NewMemoryBackend(), nil, zap.NewNop(), tokenstore.Options{CacheSize: n})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	principal := func(r *http.Request) string { return r.Header.Get("X-User") }
	g, err := New(Config{Resource: "https://mcp.example.com/mcp", Grant: tokenstore.GrantAuthorizationCode,
		RedirectURI: "https://gw.example.com/mcp/.oauth/callback", Principal: "{http.request.header.X-User}", TokenWait: time.Second},
		Options{Manager: m, Principal: principal})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	for i := 0; i < n; i++ {
		c := g.flow.credential(userName(i))
		res := &tokenstore.TokenResult{AccessToken: fmt.Sprintf("at_%040d", i), RefreshToken: fmt.Sprintf("rt_%040d", i), TokenType: "Bearer", ExpiresIn: time.Hour}
		if err := c.Authorized(context.Background(), res, "https://as.example.com", nil); err != nil {
			tb.Fatal(err)
		}
	}
	return g
}

func userName(i int) string { return fmt.Sprintf("user%05d", i) }

// zipfRequests are requests from n users, Zipf-distributed (s = 1.1):
// a few users send most of the traffic, as in a real team.
func zipfRequests(n, count int) []*http.Request {
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(n-1))
	reqs := make([]*http.Request, count)
	for i := range reqs {
		r := httptest.NewRequest(http.MethodGet, "/echo", nil)
		r.Header.Set("X-User", userName(int(z.Uint64())))
		reqs[i] = r
	}
	return reqs
}

// BenchmarkHotPathPerUserZipf10k is the per-request cost with 10,000
// authorized users and Zipf-distributed traffic; compare with
// BenchmarkBaselineStaticHeader.
func BenchmarkHotPathPerUserZipf10k(b *testing.B) {
	g := newPerUserGateway(b, 10_000)
	reqs := zipfRequests(10_000, 1<<14)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine its own requests: the handler writes headers.
		mine := make([]*http.Request, len(reqs))
		for j, r := range reqs {
			mine[j] = r.Clone(r.Context())
		}
		i := rand.IntN(len(mine))
		for pb.Next() {
			w := newDiscardWriter()
			if err := g.Serve(w, mine[i%len(mine)], okHandler{}); err != nil || w.status != http.StatusOK {
				b.Fatalf("status %d: %v", w.status, err)
			}
			i++
		}
	})
}
