package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rotatingRequester plays a strict authorization server in-process: each
// refresh spends the presented refresh token and returns a new one;
// presenting a spent one is counted as reuse.
type rotatingRequester struct {
	mu       sync.Mutex
	valid    map[string]bool // refresh tokens not yet spent
	spent    map[string]bool
	n        int
	calls    atomic.Int64
	reuse    atomic.Int64
	ttl      time.Duration
	fail     func(req TokenRequest) error // optional failure injection
	rotate   bool
	lastReq  TokenRequest
	gotScope [][]string
}

func newRotating(seed string, ttl time.Duration) *rotatingRequester {
	return &rotatingRequester{valid: map[string]bool{seed: true}, spent: map[string]bool{}, ttl: ttl, rotate: true}
}

func (r *rotatingRequester) RequestToken(_ context.Context, req TokenRequest) (*TokenResult, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastReq = req
	r.gotScope = append(r.gotScope, req.Scopes)
	if r.fail != nil {
		if err := r.fail(req); err != nil {
			return nil, err
		}
	}
	r.n++
	res := &TokenResult{AccessToken: fmt.Sprintf("at-%d", r.n), TokenType: "bearer", ExpiresIn: r.ttl}
	if req.Grant == GrantRefreshToken {
		if r.spent[req.RefreshToken] {
			r.reuse.Add(1)
			return nil, testErr{perm: true, msg: "invalid_grant (reuse)"}
		}
		if !r.valid[req.RefreshToken] {
			return nil, testErr{perm: true, msg: "invalid_grant"}
		}
		if r.rotate {
			delete(r.valid, req.RefreshToken)
			r.spent[req.RefreshToken] = true
			res.RefreshToken = fmt.Sprintf("rt-%d", r.n)
			r.valid[res.RefreshToken] = true
		}
	}
	return res, nil
}

type testErr struct {
	perm, trans bool
	msg         string
}

func (e testErr) Error() string   { return e.msg }
func (e testErr) Permanent() bool { return e.perm }
func (e testErr) Transient() bool { return e.trans }

// flakyBackend fails writes while failWrites > 0.
type flakyBackend struct {
	Backend
	failWrites atomic.Int64
	failReads  atomic.Bool
	failLocks  atomic.Bool
}

var errDown = errors.New("backend down")

func (f *flakyBackend) CompareAndSwap(ctx context.Context, id string, prev, next uint64, data []byte) error {
	if f.failWrites.Load() > 0 {
		f.failWrites.Add(-1)
		return errDown
	}
	return f.Backend.CompareAndSwap(ctx, id, prev, next, data)
}

func (f *flakyBackend) Get(ctx context.Context, id string) (uint64, []byte, error) {
	if f.failReads.Load() {
		return 0, nil, errDown
	}
	return f.Backend.Get(ctx, id)
}

func (f *flakyBackend) Lock(ctx context.Context, id string, ttl time.Duration) (func(), error) {
	if f.failLocks.Load() {
		return nil, errDown
	}
	return f.Backend.Lock(ctx, id, ttl)
}

// clock is a manual clock for window tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testOptions() Options {
	return Options{RetryBase: time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond, LockWait: 2 * time.Second, RefreshTimeout: 5 * time.Second}
}

func newTestManager(t *testing.T, b Backend, opts Options) *Manager {
	t.Helper()
	m, err := NewManager(b, nil, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cancel() })
	return m
}

func refreshSpec(seed string) Spec {
	return Spec{Resource: "https://api.example/mcp", ClientID: "c1", Grant: GrantRefreshToken, TokenEndpoint: "https://as.example/token", SeedRefreshToken: seed}
}

func ccSpec() Spec {
	return Spec{Resource: "https://api.example/mcp", ClientID: "c1", Grant: GrantClientCredentials, TokenEndpoint: "https://as.example/token", Scopes: []string{"read"}}
}

func storedRecord(t *testing.T, m *Manager, id string) *Record {
	t.Helper()
	rec, err := m.load(context.Background(), id)
	if err != nil {
		t.Fatalf("loading record: %v", err)
	}
	return rec
}
