package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Outstanding flows are bounded per credential (oldest replaced) and per
// handler (refused), and a taken flow frees its place.
func TestPendingBounds(t *testing.T) {
	ctx := context.Background()
	backend := NewMemoryBackend()
	m := newTestManager(t, backend, testOptions())
	limits := PendingLimits{Handler: "h1", PerCredential: 3, PerHandler: 5}
	save := func(cred string, i int) error {
		p := &PendingAuthorization{CredentialID: cred, ExpiresAt: time.Now().Add(time.Minute)}
		return m.SavePendingBounded(ctx, fmt.Sprintf("%s-state-%d", cred, i), p, limits)
	}
	for i := 0; i < 50; i++ {
		if err := save("alice", i); err != nil {
			t.Fatalf("alice's start %d: %v", i, err)
		}
	}
	if n := countPending(t, backend); n != 3 {
		t.Fatalf("pending records after 50 starts: %d, want 3", n)
	}
	if _, err := m.TakePending(ctx, "alice-state-0"); !errors.Is(err, ErrPendingUnknown) {
		t.Fatalf("the oldest flow was not replaced: %v", err)
	}
	if err := save("bob", 0); err != nil {
		t.Fatal(err)
	}
	if err := save("carol", 0); err != nil {
		t.Fatal(err)
	}
	if err := save("dave", 0); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("start beyond the handler's bound: %v", err)
	}
	if err := save("alice", 50); err != nil {
		t.Fatalf("a start replacing the user's own oldest is not refused: %v", err)
	}
	if _, err := m.TakePending(ctx, "bob-state-0"); err != nil {
		t.Fatal(err)
	}
	if err := save("dave", 0); err != nil {
		t.Fatalf("after a flow completed: %v", err)
	}
}

func countPending(t *testing.T, b *MemoryBackend) int {
	t.Helper()
	ids, err := b.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, id := range ids {
		if strings.HasPrefix(id, pendingPrefix) {
			n++
		}
	}
	return n
}
