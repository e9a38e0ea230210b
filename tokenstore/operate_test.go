package tokenstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestReplaceRevivesDeadCredential(t *testing.T) {
	req := newRotating("seed", time.Hour)
	req.valid = map[string]bool{}
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	events, stop := m.Subscribe()
	defer stop()
	c := m.Credential(refreshSpec("seed"), req)
	ctx := context.Background()
	if _, err := c.Token(ctx); !errors.Is(err, ErrDead) {
		t.Fatalf("want dead, got %v", err)
	}
	req.mu.Lock()
	req.valid["uploaded"] = true
	req.mu.Unlock()
	if err := c.Replace(ctx, "uploaded"); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatalf("after upload: %v", err)
	}
	if req.lastReq.RefreshToken != "uploaded" || tok.AccessToken == "" {
		t.Fatalf("presented %q", req.lastReq.RefreshToken)
	}
	kinds := map[string]bool{}
	for len(events) > 0 {
		kinds[(<-events).Kind] = true
	}
	for _, k := range []string{"dead", "replaced", "refreshed"} {
		if !kinds[k] {
			t.Errorf("no %q event; got %v", k, kinds)
		}
	}
}

func TestForceRefreshAndForget(t *testing.T) {
	req := newRotating("", time.Hour)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(ccSpec(), req)
	ctx := context.Background()
	first, _ := c.Token(ctx)
	forced, err := c.ForceRefresh(ctx)
	if err != nil || forced.AccessToken == first.AccessToken {
		t.Fatalf("force refresh: %v %v", forced, err)
	}
	if err := c.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	// The record stays, tokenless, so the issuer pin survives.
	rec := storedRecord(t, m, c.ID())
	if rec.AccessToken != "" || rec.RefreshToken != "" || !rec.Revoked {
		t.Fatalf("record after forget: %+v", rec)
	}
	if c.Cached() != nil {
		t.Fatal("token still cached after forget")
	}
}

func TestReleasedCredentialsAreCollected(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	opts := testOptions()
	opts.Now = clk.Now
	opts.ReleasedGrace = time.Hour
	m := newTestManager(t, NewMemoryBackend(), opts)
	ctx := context.Background()
	kept := m.Credential(ccSpec(), newRotating("", time.Hour))
	other := ccSpec()
	other.Resource = "https://other.example/"
	gone := m.Credential(other, newRotating("", time.Hour))
	_, _ = kept.Token(ctx)
	_, _ = gone.Token(ctx)
	m.Release(gone)
	m.collect(ctx)
	if len(m.Credentials()) != 2 {
		t.Fatal("collected before the grace period")
	}
	clk.Advance(2 * time.Hour)
	m.collect(ctx)
	if cs := m.Credentials(); len(cs) != 1 || cs[0] != kept {
		t.Fatalf("credentials after collection: %d", len(cs))
	}
	if _, err := m.load(ctx, gone.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale record not deleted: %v", err)
	}
	if _, err := m.load(ctx, kept.ID()); err != nil {
		t.Fatalf("used record deleted: %v", err)
	}
}
