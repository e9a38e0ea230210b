package tokenstore

import (
	"container/heap"
	"sync"
	"time"
)

// refreshScheduler calls Credential.atRefreshPoint when tokens reach
// their refresh points, for every credential of a Manager, with one
// timer. A runtime timer and closure per credential cost about 150 bytes
// each, which at 100,000 per-user credentials is 15 MB; an entry here is
// 24 bytes.
//
// Entries are not removed when a credential's token is replaced or
// evicted: each remembers the token it was scheduled for and is ignored
// when it fires for another. Stale entries are compacted away once they
// could outnumber live ones, so the heap stays proportional to the
// tokens installed within one token lifetime.
type refreshScheduler struct {
	epoch time.Time // due times count from here (monotonic)

	mu      sync.Mutex
	entries refreshHeap
	timer   *time.Timer
	armed   time.Duration // due time the timer is set for; -1 when idle
	compact int           // heap length that triggers the next compaction
	closed  bool
}

type scheduledRefresh struct {
	due time.Duration // since epoch
	c   *Credential
	tok *Token
}

// minCompaction is the heap length below which stale entries are left
// to fire (and be ignored) rather than compacted.
const minCompaction = 1024

func newRefreshScheduler() *refreshScheduler {
	s := &refreshScheduler{epoch: time.Now(), armed: -1, compact: minCompaction}
	s.timer = time.AfterFunc(time.Hour, s.run)
	s.timer.Stop()
	return s
}

// schedule makes c.atRefreshPoint(tok) run after wait.
func (s *refreshScheduler) schedule(c *Credential, tok *Token, wait time.Duration) {
	wait = max(wait, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	due := time.Since(s.epoch) + wait
	heap.Push(&s.entries, scheduledRefresh{due: due, c: c, tok: tok})
	if s.armed < 0 || due < s.armed {
		s.armed = due
		s.timer.Reset(wait)
	}
	if len(s.entries) >= s.compact {
		s.compactLocked()
	}
}

// compactLocked drops entries whose token is no longer the credential's
// current one.
func (s *refreshScheduler) compactLocked() {
	live := s.entries[:0]
	for _, e := range s.entries {
		if e.c.current.Load() == e.tok {
			live = append(live, e)
		}
	}
	clear(s.entries[len(live):]) // let dropped credentials be collected
	s.entries = live
	heap.Init(&s.entries)
	s.compact = max(minCompaction, 2*len(live))
}

// run fires every due entry and sets the timer for the next one.
func (s *refreshScheduler) run() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	now := time.Since(s.epoch)
	var due []scheduledRefresh
	for len(s.entries) > 0 && s.entries[0].due <= now {
		due = append(due, heap.Pop(&s.entries).(scheduledRefresh))
	}
	s.armed = -1
	if len(s.entries) > 0 {
		s.armed = s.entries[0].due
		s.timer.Reset(s.armed - now)
	}
	s.mu.Unlock()
	for _, e := range due {
		e.c.atRefreshPoint(e.tok)
	}
}

func (s *refreshScheduler) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.timer.Stop()
	s.entries = nil
}

// refreshHeap is a min-heap of entries by due time (container/heap).
type refreshHeap []scheduledRefresh

func (h refreshHeap) Len() int           { return len(h) }
func (h refreshHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h refreshHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *refreshHeap) Push(x any)        { *h = append(*h, x.(scheduledRefresh)) }
func (h *refreshHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = scheduledRefresh{}
	*h = old[:len(old)-1]
	return e
}
