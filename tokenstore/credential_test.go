package tokenstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestConcurrentRequestsShareOneTokenRequest(t *testing.T) {
	req := newRotating("seed", time.Hour)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(refreshSpec("seed"), req)

	var wg sync.WaitGroup
	tokens := make([]string, 200)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Token(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = tok.AccessToken
		}()
	}
	wg.Wait()
	if got := req.calls.Load(); got != 1 {
		t.Fatalf("token requests = %d, want 1", got)
	}
	for _, tk := range tokens {
		if tk != "at-1" {
			t.Fatalf("token = %q, want at-1", tk)
		}
	}
}

func TestRotatedRefreshTokenIsPersistedAndNeverReused(t *testing.T) {
	req := newRotating("seed", time.Hour)
	opts := testOptions()
	opts.ReactiveRefreshInterval = time.Nanosecond // every rejection refreshes here
	m := newTestManager(t, NewMemoryBackend(), opts)
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()

	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec := storedRecord(t, m, c.ID()); rec.RefreshToken != "rt-1" || rec.Generation != 1 {
		t.Fatalf("stored refresh token %q gen %d, want rt-1 gen 1", rec.RefreshToken, rec.Generation)
	}
	for i := 0; i < 5; i++ {
		tok, err = c.Invalidate(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
	}
	if req.reuse.Load() != 0 {
		t.Fatalf("reuse detections = %d", req.reuse.Load())
	}
	if rec := storedRecord(t, m, c.ID()); rec.RefreshToken != "rt-6" || rec.Generation != 6 {
		t.Fatalf("stored %q gen %d, want rt-6 gen 6", rec.RefreshToken, rec.Generation)
	}
}

func TestInvalidateOfReplacedTokenMakesNoRequest(t *testing.T) {
	req := newRotating("seed", time.Hour)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	old, _ := c.Token(ctx)
	fresh, err := c.Invalidate(ctx, old.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Invalidate(ctx, old.AccessToken) // a second 401 for the same old token
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != fresh.AccessToken || req.calls.Load() != 2 {
		t.Fatalf("calls = %d (want 2), token %q vs %q", req.calls.Load(), again.AccessToken, fresh.AccessToken)
	}
}

func TestFailedWriteKeepsNewPairAndRetries(t *testing.T) {
	req := newRotating("seed", time.Hour)
	fb := &flakyBackend{Backend: NewMemoryBackend()}
	m := newTestManager(t, fb, testOptions())
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()

	fb.failWrites.Store(3)
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatalf("a failed store write must not fail the request: %v", err)
	}
	// Before the retry lands, a second refresh must present rt-1 (held
	// in memory), never the spent seed.
	tok, err = c.Invalidate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if req.reuse.Load() != 0 {
		t.Fatal("spent refresh token presented again")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := m.load(ctx, c.ID())
		if err == nil && rec.RefreshToken == "rt-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending write never landed: rec=%v err=%v", rec, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = tok
}

func TestSecondInstanceAdoptsInsteadOfSpending(t *testing.T) {
	req := newRotating("seed", time.Hour)
	shared := NewMemoryBackend()
	a := newTestManager(t, shared, testOptions()).Credential(refreshSpec("seed"), req)
	b := newTestManager(t, shared, testOptions()).Credential(refreshSpec("seed"), req)
	ctx := context.Background()

	ta, err := a.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Token(ctx) // must adopt a's token, not spend the seed again
	if err != nil {
		t.Fatal(err)
	}
	if tb.AccessToken != ta.AccessToken || req.calls.Load() != 1 {
		t.Fatalf("b got %q (a %q), calls %d", tb.AccessToken, ta.AccessToken, req.calls.Load())
	}
	// a refreshes after a 401; b's stale token then fails upstream and b
	// adopts a's new token from the store.
	ta2, _ := a.Invalidate(ctx, ta.AccessToken)
	tb2, err := b.Invalidate(ctx, tb.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if tb2.AccessToken != ta2.AccessToken || req.calls.Load() != 2 || req.reuse.Load() != 0 {
		t.Fatalf("b %q a %q calls %d reuse %d", tb2.AccessToken, ta2.AccessToken, req.calls.Load(), req.reuse.Load())
	}
}

func TestDeadCredentialStopsAskingServer(t *testing.T) {
	req := newRotating("seed", time.Hour)
	req.valid = map[string]bool{} // the seed is not valid
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		_, err := c.Token(ctx)
		if !errors.Is(err, ErrDead) {
			t.Fatalf("err = %v, want ErrDead", err)
		}
	}
	if got := req.calls.Load(); got != 1 {
		t.Fatalf("token requests = %d, want 1", got)
	}
	if st := c.Status(); st.State != StateDead || st.LastError == "" {
		t.Fatalf("status = %+v", st)
	}
	if rec := storedRecord(t, m, c.ID()); !rec.Dead {
		t.Fatal("death not persisted for other instances")
	}
}

func TestTransientFailuresRetryThenBackOff(t *testing.T) {
	req := newRotating("seed", time.Hour)
	failing := true
	var mu sync.Mutex
	req.fail = func(TokenRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return testErr{trans: true, msg: "server_error"}
		}
		return nil
	}
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	if _, err := c.Token(ctx); !errors.Is(err, ErrBackoff) {
		t.Fatalf("err = %v, want ErrBackoff", err)
	}
	if got := req.calls.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
	if _, err := c.Token(ctx); !errors.Is(err, ErrBackoff) || req.calls.Load() != 3 {
		t.Fatalf("during backoff: err %v, calls %d", err, req.calls.Load())
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	time.Sleep(60 * time.Millisecond)
	if _, err := c.Token(ctx); err != nil {
		t.Fatalf("after backoff: %v", err)
	}
	if rec := storedRecord(t, m, c.ID()); rec.RefreshToken == "" || rec.RefreshToken == "seed" {
		t.Fatalf("credential lost after transient failures: %q", rec.RefreshToken)
	}
}

func TestSeedOnlyUsedUntilStoreHasNewer(t *testing.T) {
	req := newRotating("seed", time.Hour)
	b := NewMemoryBackend()
	m1 := newTestManager(t, b, testOptions())
	if _, err := m1.Credential(refreshSpec("seed"), req).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A restart with the same seed continues from rt-1.
	m2 := newTestManager(t, b, testOptions())
	c2 := m2.Credential(refreshSpec("seed"), req)
	tok, _ := c2.Token(context.Background()) // adopts stored access token
	if _, err := c2.Invalidate(context.Background(), tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if req.lastReq.RefreshToken != "rt-1" || req.reuse.Load() != 0 {
		t.Fatalf("presented %q, reuse %d", req.lastReq.RefreshToken, req.reuse.Load())
	}
	// A new seed in the config replaces the stored credential.
	req.mu.Lock()
	req.valid["seed2"] = true
	req.mu.Unlock()
	m3 := newTestManager(t, b, testOptions())
	c3 := m3.Credential(refreshSpec("seed2"), req)
	if _, err := c3.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if req.lastReq.RefreshToken != "seed2" {
		t.Fatalf("presented %q, want the new seed", req.lastReq.RefreshToken)
	}
}

func TestRefreshWindowsScaleWithLifetime(t *testing.T) {
	now := time.Unix(1000, 0)
	tok := newToken(&Record{AccessToken: "x", IssuedAt: now, Expiry: now.Add(3 * time.Second)}, time.Minute)
	if got := time.Duration(tok.refreshAt - now.UnixNano()); got != 2400*time.Millisecond {
		t.Fatalf("3s token refreshAt = %v, want 2.4s", got)
	}
	if got := time.Duration(tok.usableUntil - now.UnixNano()); got != 2850*time.Millisecond {
		t.Fatalf("3s token usableUntil = %v, want 2.85s", got)
	}
	tok = newToken(&Record{AccessToken: "x", IssuedAt: now, Expiry: now.Add(time.Hour)}, time.Minute)
	if got := time.Duration(tok.refreshAt - now.UnixNano()); got != 59*time.Minute {
		t.Fatalf("1h token refreshAt = %v, want 59m", got)
	}
}

func TestBackgroundRefreshKeepsServingCurrentToken(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	req := newRotating("seed", 10*time.Second)
	m := newTestManager(t, NewMemoryBackend(), opts)
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	first, _ := c.Token(ctx)
	clk.Advance(9 * time.Second) // past refreshAt (8 s, moved up to 0.75 s later per instance), before usableUntil (9.5 s)
	got, err := c.Token(ctx)
	if err != nil || got.AccessToken != first.AccessToken {
		t.Fatalf("inside the refresh window the current token is served: %v %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Cached().AccessToken == first.AccessToken {
		if time.Now().After(deadline) {
			t.Fatal("background refresh never happened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if req.calls.Load() != 2 {
		t.Fatalf("calls = %d, want 2", req.calls.Load())
	}
}

func TestRotatingCredentialNotRefreshedWithoutLock(t *testing.T) {
	req := newRotating("seed", time.Hour)
	fb := &flakyBackend{Backend: NewMemoryBackend()}
	m := newTestManager(t, fb, testOptions())
	c := m.Credential(refreshSpec("seed"), req)
	fb.failLocks.Store(true)
	if _, err := c.Token(context.Background()); !errors.Is(err, ErrBackoff) {
		t.Fatalf("err = %v, want a temporary error", err)
	}
	if req.calls.Load() != 0 {
		t.Fatal("refresh token presented without the lock")
	}
	// Client credentials have nothing to spend twice: they proceed.
	cc := m.Credential(ccSpec(), newRotating("", time.Hour))
	if _, err := cc.Token(context.Background()); err != nil {
		t.Fatalf("client credentials without lock: %v", err)
	}
}

func TestStepUpWidensAndPersistsScopes(t *testing.T) {
	req := newRotating("", time.Hour)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(ccSpec(), req)
	ctx := context.Background()
	tok, _ := c.Token(ctx)
	up, err := c.StepUp(ctx, []string{"write"}, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if !up.HasScopes([]string{"read", "write"}) {
		t.Fatalf("scopes = %v", up.Scopes)
	}
	if rec := storedRecord(t, m, c.ID()); len(rec.Scopes) != 2 {
		t.Fatalf("persisted scopes = %v", rec.Scopes)
	}
	rc := m.Credential(refreshSpec("seed"), newRotating("seed", time.Hour))
	if _, err := rc.StepUp(ctx, []string{"write"}, ""); !errors.Is(err, ErrScopeNotGrantable) {
		t.Fatalf("refresh grant step-up: %v", err)
	}
}

func TestStoreThatLostTheRecordIsRestoredFromMemory(t *testing.T) {
	req := newRotating("seed", time.Hour)
	b := NewMemoryBackend()
	m := newTestManager(t, b, testOptions())
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Delete(ctx, c.ID()) // the store forgets everything
	if _, err := c.Invalidate(ctx, tok.AccessToken); err != nil {
		t.Fatalf("refresh after the store lost the record: %v", err)
	}
	if req.reuse.Load() != 0 || req.lastReq.RefreshToken != "rt-1" {
		t.Fatalf("presented %q (reuse %d): the spent seed came back", req.lastReq.RefreshToken, req.reuse.Load())
	}
	if rec := storedRecord(t, m, c.ID()); rec.RefreshToken != "rt-2" {
		t.Fatalf("restored record holds %q", rec.RefreshToken)
	}
}

// A credential used during a token's lifetime is refreshed at its refresh
// point without a request; an unused one is not, nor one whose only use
// was the request that asked for the token (a user who comes back less
// often than tokens live would cost two token requests per visit).
func TestUsedCredentialRefreshesOnTimer(t *testing.T) {
	once := newRotating("", 1500*time.Millisecond)
	onceMgr := newTestManager(t, NewMemoryBackend(), testOptions())
	if _, err := onceMgr.Credential(ccSpec(), once).Token(context.Background()); err != nil {
		t.Fatal(err)
	}

	req := newRotating("", 1500*time.Millisecond) // refresh point at 1.2 s
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(ccSpec(), req)
	first, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Token(context.Background()); err != nil || again != first {
		t.Fatalf("second use: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Cached() == nil || c.Cached().AccessToken == first.AccessToken {
		if time.Now().After(deadline) {
			t.Fatal("no refresh at the refresh point")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := req.calls.Load(); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
	// Nobody used the second token: no third request.
	time.Sleep(2 * time.Second)
	if n := req.calls.Load(); n != 2 {
		t.Fatalf("idle credential refreshed: %d token requests", n)
	}
	if n := once.calls.Load(); n != 1 {
		t.Fatalf("a credential used only by the request that obtained its token was refreshed ahead: %d token requests", n)
	}
}
