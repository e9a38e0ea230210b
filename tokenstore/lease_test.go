package tokenstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Found by the chaos suite (issue 12): an instance whose write of a
// rotated pair failed released the refresh lock, another instance took
// it, read the stored (spent) refresh token and presented it: the server
// saw reuse and revoked the family. The lock is now kept until the
// pending write lands, so the other instance adopts the new pair.
func TestFailedWriteKeepsTheLockUntilThePairIsStored(t *testing.T) {
	shared := &flakyBackend{Backend: NewMemoryBackend()}
	req := newRotating("seed", time.Hour)
	opts := testOptions()
	opts.LockTTL = 10 * time.Second
	a := newTestManager(t, shared, opts)
	b := newTestManager(t, shared, opts)
	ca, cb := a.Credential(refreshSpec("seed"), req), b.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	if _, err := ca.Token(ctx); err != nil { // stores rt-1
		t.Fatal(err)
	}
	// Instance A refreshes; its write fails twice (the store is briefly
	// unreachable), so the new pair exists only in A's memory for a while.
	shared.failWrites.Store(2)
	if _, err := ca.ForceRefresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Instance B must now refresh too (its upstream rejected the token).
	tok, err := cb.Invalidate(ctx, "at-1")
	if err != nil {
		t.Fatalf("instance B: %v", err)
	}
	if n := req.reuse.Load(); n != 0 {
		t.Fatalf("a spent refresh token was presented %d times", n)
	}
	if tok == nil || tok.AccessToken == "at-1" {
		t.Fatalf("instance B got %v", tok)
	}
	if rec := storedRecord(t, a, ca.ID()); rec.RefreshToken == "seed" || rec.RefreshToken == "rt-1" {
		t.Fatalf("store holds spent refresh token %q", rec.RefreshToken)
	}
}

// Found by the chaos suite: a replay after a 401 went out with a token
// past its refresh point (a 2-second token has 100 ms of margin), which
// the upstream rejected too, and the client saw the 401. A token that
// replaces a rejected one must be before its refresh point.
func TestReplayDoesNotUseATokenAboutToExpire(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	m := newTestManager(t, NewMemoryBackend(), opts)
	req := newRotating("seed", 10*time.Second)
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(9 * time.Second) // past the refresh point (8 s), still usable
	// A request that carried an older token was rejected: the current
	// one is not handed to its replay; a new one is obtained.
	got, err := c.Invalidate(ctx, "an-older-token")
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken == tok.AccessToken {
		t.Fatalf("the replay got %s, which expires within a second", got.AccessToken)
	}
}

// A token's lifetime counts from when it was asked for, not from when
// the (slow) answer arrived.
func TestLifetimeCountsFromTheRequest(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	m := newTestManager(t, NewMemoryBackend(), opts)
	req := newRotating("seed", time.Minute)
	asked := clk.Now()
	req.fail = func(TokenRequest) error { clk.Advance(5 * time.Second); return nil } // a slow answer
	c := m.Credential(refreshSpec("seed"), req)
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := asked.Add(time.Minute); !tok.Expiry.Equal(want) {
		t.Fatalf("expiry %v, want %v (counted from the request)", tok.Expiry.Sub(asked), time.Minute)
	}
}

// Found by the cost curve (issue 12): three instances reached the same
// refresh point together and polled the lock (about 45 Redis commands
// per token request). Each instance now picks its own point in the first
// half of the window before the token must not be used.
func TestRefreshPointsSpreadAcrossInstances(t *testing.T) {
	now := time.Now()
	rec := &Record{AccessToken: "x", IssuedAt: now, Expiry: now.Add(time.Minute)}
	base := newToken(rec, time.Minute)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	seen := map[int64]bool{}
	for range 20 {
		tok, err := m.newToken(rec)
		if err != nil {
			t.Fatal(err)
		}
		if tok.refreshAt < base.refreshAt || tok.refreshAt >= base.refreshAt+(base.usableUntil-base.refreshAt)/2 {
			t.Fatalf("refresh point %v outside [%v, half the window)", time.Duration(tok.refreshAt-base.refreshAt), 0)
		}
		seen[tok.refreshAt] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 tokens got %d distinct refresh points", len(seen))
	}
}

// Found by the chaos suite: a token obtained after a 401 and rejected
// again as it expired (2-second tokens, a loaded host) was answered with
// ErrRejectedAgain, and the client got the upstream's 401. Near expiry a
// rejection is refreshed like any other.
func TestRejectedNearExpiryIsRefreshed(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	m := newTestManager(t, NewMemoryBackend(), opts)
	req := newRotating("seed", 2*time.Second)
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	first, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reactive, err := c.Invalidate(ctx, first.AccessToken) // the upstream rejected it
	if err != nil {
		t.Fatal(err)
	}
	// Moments later the reactive token is rejected too, at once: that is
	// a misbehaving upstream, and passed on.
	if _, err := c.Invalidate(ctx, reactive.AccessToken); !errors.Is(err, ErrRejectedAgain) {
		t.Fatalf("rejected again at once: %v, want ErrRejectedAgain", err)
	}
	// Near its expiry it is refreshed.
	clk.Advance(1900 * time.Millisecond)
	got, err := c.Invalidate(ctx, reactive.AccessToken)
	if err != nil || got.AccessToken == reactive.AccessToken {
		t.Fatalf("rejected near expiry: %v %v, want a new token", got, err)
	}
}

// Found by the chaos suite's 60-second run: an authorization server
// answering slower than its tokens live (5 s for 2-second tokens) gave
// tokens that were dead on arrival; sent upstream, they came back as 401s
// to clients. Such a token is stored but not used: the caller gets a
// transient error (a 503 with Retry-After), and the pair is kept.
func TestTokenDeadOnArrivalIsNotUsed(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	m := newTestManager(t, NewMemoryBackend(), opts)
	req := newRotating("seed", 2*time.Second)
	req.fail = func(TokenRequest) error { clk.Advance(5 * time.Second); return nil } // a slow answer
	c := m.Credential(refreshSpec("seed"), req)
	_, err := c.Token(context.Background())
	if !errors.Is(err, ErrBackoff) {
		t.Fatalf("dead-on-arrival token: %v, want a transient failure", err)
	}
	if rec := storedRecord(t, m, c.ID()); rec.RefreshToken != "rt-1" {
		t.Fatalf("stored refresh token %q, want the rotated rt-1", rec.RefreshToken)
	}
}

// Found by the 60 s chaos run (full disk): while a failed write was
// retried under the refresh lease, the next refresh in the same process
// waited for that lease, so once the token expired clients got 503s
// although memory held a pair the server accepts. A refresh now takes
// the pending write's lease over and spends the newest pair; everything
// is written once writes work again.
func TestRefreshesGoOnFromMemoryWhileWritesFail(t *testing.T) {
	store := &flakyBackend{Backend: NewMemoryBackend()}
	req := newRotating("seed", time.Hour)
	opts := testOptions()
	opts.LockWait = 300 * time.Millisecond
	m := newTestManager(t, store, opts)
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	store.failWrites.Store(1 << 30) // a full disk
	last := ""
	for i := range 5 {
		start := time.Now()
		tok, err := c.ForceRefresh(ctx)
		if err != nil {
			t.Fatalf("refresh %d with writes failing: %v", i, err)
		}
		if waited := time.Since(start); waited >= opts.LockWait {
			t.Fatalf("refresh %d waited %s for a lease this process holds", i, waited)
		}
		last = tok.AccessToken
	}
	if n := req.reuse.Load(); n != 0 {
		t.Fatalf("a spent refresh token was presented %d times", n)
	}
	store.failWrites.Store(0) // space again
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := storedRecord(t, m, c.ID())
		if rec.AccessToken == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the newest pair was not written once writes worked: stored %q, want %q", rec.AccessToken, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
