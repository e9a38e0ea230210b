package tokenstore

import (
	"context"
	"sort"
	"sync"
	"time"
)

// MemoryBackend keeps records in process memory only: nothing survives a
// restart. It is the `storage memory` option, and the reference the other
// backends are tested against.
type MemoryBackend struct {
	mu      sync.Mutex
	records map[string]memoryEntry
	locks   keyedLock
}

type memoryEntry struct {
	gen  uint64
	data []byte
}

// NewMemoryBackend returns an empty MemoryBackend.
func NewMemoryBackend() *MemoryBackend {
	return &MemoryBackend{records: make(map[string]memoryEntry)}
}

// Get implements Backend.
func (m *MemoryBackend) Get(_ context.Context, id string) (uint64, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.records[id]
	if !ok {
		return 0, nil, ErrNotFound
	}
	return e.gen, append([]byte(nil), e.data...), nil
}

// CompareAndSwap implements Backend atomically.
func (m *MemoryBackend) CompareAndSwap(_ context.Context, id string, prevGen, newGen uint64, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records[id].gen != prevGen {
		return ErrConflict
	}
	m.records[id] = memoryEntry{gen: newGen, data: append([]byte(nil), data...)}
	return nil
}

// Delete implements Backend.
func (m *MemoryBackend) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, id)
	return nil
}

// List implements Backend.
func (m *MemoryBackend) List(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.records))
	for id := range m.records {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// Lock implements Backend. The lease cannot outlive the process, so ttl
// is not needed here.
func (m *MemoryBackend) Lock(ctx context.Context, id string, _ time.Duration) (func(), error) {
	return m.locks.lock(ctx, id)
}

// Close implements Backend.
func (m *MemoryBackend) Close() error { return nil }
