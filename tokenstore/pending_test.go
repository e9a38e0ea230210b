package tokenstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Pending authorizations are single-use, expire, and are collected.
func TestPendingAuthorizationLifecycle(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	backend := NewMemoryBackend()
	m := newTestManager(t, backend, opts)
	ctx := context.Background()
	p := &PendingAuthorization{CredentialID: "c", Principal: "alice", CodeVerifier: "v", ExpiresAt: clk.Now().Add(time.Minute)}
	if err := m.SavePending(ctx, "state-1", p); err != nil {
		t.Fatal(err)
	}
	got, err := m.TakePending(ctx, "state-1")
	if err != nil || got.Principal != "alice" || got.CodeVerifier != "v" {
		t.Fatalf("take: %+v %v", got, err)
	}
	if _, err := m.TakePending(ctx, "state-1"); !errors.Is(err, ErrPendingUnknown) {
		t.Fatalf("second take: %v", err)
	}
	_ = m.SavePending(ctx, "state-2", p)
	clk.Advance(2 * time.Minute)
	if _, err := m.TakePending(ctx, "state-2"); !errors.Is(err, ErrPendingExpired) {
		t.Fatalf("expired take: %v", err)
	}
	_ = m.SavePending(ctx, "state-3", p) // expired already
	m.collectPending(ctx)
	if ids, _ := backend.List(ctx); len(ids) != 0 {
		t.Fatalf("not collected: %v", ids)
	}
	// The state itself is not a key anyone listing the store sees.
	_ = m.SavePending(ctx, "state-4", &PendingAuthorization{ExpiresAt: clk.Now().Add(time.Hour)})
	if ids, _ := backend.List(ctx); len(ids) != 1 || ids[0] == "state-4" {
		t.Fatalf("ids %v", ids)
	}
}
