package tokenstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// tryLockBackend is a memory backend that is also a TryLocker, counting
// attempts, as a shared (Redis) backend would be.
type tryLockBackend struct {
	*MemoryBackend
	tries atomic.Int32
}

func (b *tryLockBackend) TryLock(ctx context.Context, id string, ttl time.Duration) (func(), error) {
	b.tries.Add(1)
	ctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	release, err := b.Lock(ctx, id, ttl)
	if err != nil {
		return nil, ErrLockBusy
	}
	return release, nil
}

// A proactive refresh that finds the lease held (another instance is
// refreshing) makes one attempt and leaves the credential alone for a
// while, however many requests pass the refresh point meanwhile; a
// request needing a token does not share its give-up.
func TestProactiveRefreshDoesNotPollABusyLease(t *testing.T) {
	ctx := context.Background()
	req := newRotating("", 1500*time.Millisecond)
	b := &tryLockBackend{MemoryBackend: NewMemoryBackend()}
	m := newTestManager(t, b, testOptions())
	c := m.Credential(ccSpec(), req)
	first, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Token(ctx) // used: refreshed ahead of time
	release, err := b.Lock(ctx, c.ID(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for b.tries.Load() == 0 {
		if time.Since(start) > 1400*time.Millisecond {
			t.Fatal("no proactive attempt by 1.4 s of a 1.5 s token")
		}
		c.Token(ctx)
		time.Sleep(5 * time.Millisecond)
	}
	for range 20 { // requests past the refresh point, while the lease is held
		if tok, err := c.Token(ctx); err != nil || tok != first {
			t.Fatalf("request past the refresh point: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if n := b.tries.Load(); n != 1 {
		t.Fatalf("%d lease attempts while another holder refreshes, want 1", n)
	}
	if n := req.calls.Load(); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	// Past expiry a request waits for the lease (not ErrLockBusy) and
	// gets a token once it is free.
	time.AfterFunc(1600*time.Millisecond-time.Since(start), release)
	time.Sleep(1550*time.Millisecond - time.Since(start))
	tok, err := c.Token(ctx)
	if err != nil || tok == first {
		t.Fatalf("after expiry: %v", err)
	}
}
