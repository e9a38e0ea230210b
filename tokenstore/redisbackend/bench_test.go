package redisbackend

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

func benchCredentials(b *testing.B, backend tokenstore.Backend, cacheSize, n int) []*tokenstore.Credential {
	b.Helper()
	m, err := tokenstore.NewManager(backend, nil, nil, tokenstore.Options{CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	req := requesterFunc(func() (*tokenstore.TokenResult, error) {
		return &tokenstore.TokenResult{AccessToken: "at_0123456789abcdef0123456789abcdef", ExpiresIn: time.Hour}, nil
	})
	var creds []*tokenstore.Credential
	for i := 0; i < n; i++ {
		spec := tokenstore.Spec{Resource: fmt.Sprintf("https://api%d.example/", i), ClientID: "c", Grant: tokenstore.GrantClientCredentials, TokenEndpoint: "https://as.example/token"}
		c := m.Credential(spec, req)
		if _, err := c.Token(context.Background()); err != nil {
			b.Fatal(err)
		}
		creds = append(creds, c)
	}
	return creds
}

// BenchmarkHotPathRedisStore and BenchmarkHotPathMemoryStore compare a
// cached token's cost per request with each store: the hot path makes no
// store round trip, so they should be equal.
func BenchmarkHotPathRedisStore(b *testing.B) {
	s := redistest.Start(b)
	be, err := New(Config{URLs: []string{s.URL()}})
	if err != nil {
		b.Fatal(err)
	}
	benchHotPath(b, be)
}

func BenchmarkHotPathMemoryStore(b *testing.B) { benchHotPath(b, tokenstore.NewMemoryBackend()) }

func benchHotPath(b *testing.B, backend tokenstore.Backend) {
	c := benchCredentials(b, backend, 10, 1)[0]
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Token(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCacheMissRedis measures a cache miss with the Redis store: the
// in-memory cache holds one credential and requests alternate between two,
// so every request reloads a stored token (lock, read, decode, unlock).
// It reports p50 and p99.
func BenchmarkCacheMissRedis(b *testing.B) {
	s := redistest.Start(b)
	be, err := New(Config{URLs: []string{s.URL()}})
	if err != nil {
		b.Fatal(err)
	}
	creds := benchCredentials(b, be, 1, 2)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, cached, err := creds[i%2].Acquire(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if cached && i > 1 {
			b.Fatal("expected a cache miss")
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
