package tokenstore

import (
	"context"
	"sync"
)

// keyedLock is a set of context-aware mutexes, one per key, created on
// demand and dropped when unused. It serialises refreshes of one
// credential inside a process without a lock shared between credentials
// being held while waiting.
type keyedLock struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int
}

// lock waits for key until ctx ends. The returned release must be called
// exactly once.
func (k *keyedLock) lock(ctx context.Context, key string) (release func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedEntry)
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
	case <-ctx.Done():
		k.unref(key, e)
		return nil, ErrLockTimeout
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.ch
			k.unref(key, e)
		})
	}, nil
}

func (k *keyedLock) unref(key string, e *keyedEntry) {
	k.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}
