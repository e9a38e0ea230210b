package tokenstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// instantRequester issues tokens without a network round trip, so the
// benchmark measures what the store keeps, not a server.
type instantRequester struct{}

func (instantRequester) RequestToken(_ context.Context, req TokenRequest) (*TokenResult, error) {
	return &TokenResult{AccessToken: "at_0123456789abcdefghijklmnopqrstuvwxyz012345", TokenType: "Bearer", ExpiresIn: time.Hour, RefreshToken: req.RefreshToken}, nil
}

// BenchmarkMemory100kCachedCredentials reports the heap held per cached
// credential with 100,000 credentials holding tokens (memory backend, so
// the records themselves are counted too).
func BenchmarkMemory100kCachedCredentials(b *testing.B) {
	const n = 100_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := NewManager(NewMemoryBackend(), nil, nil, Options{CacheSize: n})
		if err != nil {
			b.Fatal(err)
		}
		creds := make([]*Credential, n)
		for j := range creds {
			spec := Spec{Resource: fmt.Sprintf("https://api%d.example/mcp", j), ClientID: "client", Grant: GrantClientCredentials, TokenEndpoint: "https://as.example/token", Scopes: []string{"read"}}
			creds[j] = m.Credential(spec, instantRequester{})
			if _, err := creds[j].Token(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/credential")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/100k")
		runtime.KeepAlive(creds)
		_ = m.Close()
	}
}
