package tokenstore

import (
	"testing"
	"time"
)

// The scheduler fires each credential's current token at its refresh
// point, ignores tokens replaced meanwhile, and keeps its heap bounded by
// live entries when tokens are replaced many times before they are due.
func TestRefreshSchedulerFiresCurrentTokensOnly(t *testing.T) {
	m, err := NewManager(&nullBackend{}, nil, nil, Options{CacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s := m.scheduler

	c := m.Credential(Spec{Resource: "https://r.example", Grant: GrantClientCredentials}, instantRequester{})
	old, cur := &Token{}, &Token{}
	c.current.Store(cur)
	// atRefreshPoint clears used when it fires for the current token (and
	// starts a background refresh); a fire for the replaced one does not.
	s.schedule(c, old, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	c.used.Store(true)
	s.schedule(c, old, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if !c.used.Load() {
		t.Fatal("a replaced token's refresh point acted on the credential")
	}
	s.schedule(c, cur, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for c.used.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.used.Load() {
		t.Fatal("the current token's refresh point never fired")
	}

	// 5,000 replaced tokens scheduled an hour ahead: compaction keeps the
	// heap near the live count instead of 5,000.
	live := m.Credential(Spec{Resource: "https://other.example", Grant: GrantClientCredentials}, instantRequester{})
	for i := 0; i < 5000; i++ {
		tok := &Token{}
		live.current.Store(tok)
		s.schedule(live, tok, time.Hour)
	}
	s.mu.Lock()
	n := len(s.entries)
	s.mu.Unlock()
	if n > minCompaction {
		t.Fatalf("heap holds %d entries for 1 live token, want at most %d", n, minCompaction)
	}
}

// A closed scheduler drops entries and accepts no more.
func TestRefreshSchedulerClose(t *testing.T) {
	s := newRefreshScheduler()
	s.close()
	s.schedule(&Credential{}, &Token{}, 0)
	if len(s.entries) != 0 {
		t.Fatalf("closed scheduler kept %d entries", len(s.entries))
	}
}
