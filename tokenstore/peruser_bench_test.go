package tokenstore

import (
	"context"
	"fmt"
	"runtime"

	"testing"
	"time"
)

// nullBackend keeps nothing, so a memory measurement counts only what
// the in-process cache holds (the records live in Redis or on disk).
type nullBackend struct{ locks keyedLock }

func (*nullBackend) Get(context.Context, string) (uint64, []byte, error) { return 0, nil, ErrNotFound }
func (*nullBackend) CompareAndSwap(context.Context, string, uint64, uint64, []byte) error {
	return nil
}
func (*nullBackend) Delete(context.Context, string) error   { return nil }
func (*nullBackend) List(context.Context) ([]string, error) { return nil, nil }
func (b *nullBackend) Lock(ctx context.Context, id string, _ time.Duration) (func(), error) {
	return b.locks.lock(ctx, id)
}
func (*nullBackend) Close() error { return nil }

// BenchmarkMemoryPerUserCredential reports the heap one cached per-user
// (authorization-code) credential holds beyond its token strings, with
// 10,000 users authorized.
func BenchmarkMemoryPerUserCredential(b *testing.B) {
	const n = 10_000
	access := "at_0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH" // 58 bytes
	refresh := "rt_0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := NewManager(&nullBackend{}, nil, nil, Options{CacheSize: n})
		if err != nil {
			b.Fatal(err)
		}
		creds := make([]*Credential, n)
		// Handlers find users' credentials through Principals; its entry
		// is part of what one cached per-user credential costs.
		users := m.Principals(Spec{Resource: "https://mcp.example.com/mcp", Grant: GrantAuthorizationCode}, instantRequester{})
		var tokenBytes int
		for j := range creds {
			spec := Spec{Resource: "https://mcp.example.com/mcp", Grant: GrantAuthorizationCode, Principal: fmt.Sprintf("user-%05d@example.com", j)}
			creds[j] = users.Credential(spec.Principal)
			// Distinct token strings, as a server issues them.
			at, rt := fmt.Sprintf("%s%05d", access, j), fmt.Sprintf("%s%05d", refresh, j)
			tokenBytes += len(at) + len(rt)
			res := &TokenResult{AccessToken: at, RefreshToken: rt, TokenType: "Bearer", ExpiresIn: time.Hour}
			if err := creds[j].Authorized(context.Background(), res, "https://as.example.com", []string{"read"}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(total/n, "bytes/credential")
		b.ReportMetric((total-float64(tokenBytes))/n, "bytes/credential-beyond-tokens")
		runtime.KeepAlive(creds)
		runtime.KeepAlive(users)
		_ = m.Close()
	}
}
