package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
)

// KeyValueStorage is the part of certmagic.Storage (Caddy's storage
// abstraction) the StorageBackend uses: every certmagic.Storage is one.
// It is declared here, with standard types only, so that tokenstore (and
// the gateway core above it) does not depend on Caddy's libraries.
type KeyValueStorage interface {
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, path string, recursive bool) ([]string, error)
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// StorageBackend keeps records in a certmagic.Storage: Caddy's configured
// storage (by default the file system under Caddy's data directory) or a
// certmagic.FileStorage at a directory of the user's choosing.
//
// Caddy's file storage writes atomically (temporary file, fsync, rename)
// with mode 0600, and its locks are lock files with stale detection, so
// several Caddy processes sharing one data directory refresh safely.
type StorageBackend struct {
	storage KeyValueStorage
	prefix  string
	// local serialises lock holders inside this process, so goroutines do
	// not poll lock files against each other.
	local keyedLock
}

// storageEnvelope is the on-storage format: the generation in clear beside
// the (possibly sealed) record, so compare-and-swap needs no key.
type storageEnvelope struct {
	Generation uint64 `json:"generation"`
	Data       []byte `json:"data"`
}

// NewStorageBackend stores records under prefix (default "oauth_gateway")
// in storage.
func NewStorageBackend(storage KeyValueStorage, prefix string) *StorageBackend {
	if prefix == "" {
		prefix = "oauth_gateway"
	}
	return &StorageBackend{storage: storage, prefix: strings.Trim(prefix, "/")}
}

func (s *StorageBackend) key(id string) string {
	return path.Join(s.prefix, "credentials", id+".json")
}

// Get implements Backend. The generation is the envelope's; with
// encryption_key set the sealed data is bound to it, so data copied from
// an older file into a newer envelope does not open.
func (s *StorageBackend) Get(ctx context.Context, id string) (uint64, []byte, error) {
	b, err := s.storage.Load(ctx, s.key(id))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, ErrNotFound
	}
	if err != nil {
		return 0, nil, fmt.Errorf("tokenstore: loading %s: %w", id, err)
	}
	var env storageEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		// Something is there, but not a record this backend wrote: it
		// fails closed and is never written over (CompareAndSwap reads
		// it first).
		return 0, nil, fmt.Errorf("%w: decoding envelope of %s: %w", ErrUnreadable, id, err)
	}
	return env.Generation, env.Data, nil
}

// CompareAndSwap implements Backend. Storage has no atomic
// compare-and-swap, so callers hold Lock(id); the generation check still
// stops a writer whose lease expired from overwriting a newer record.
func (s *StorageBackend) CompareAndSwap(ctx context.Context, id string, prevGen, newGen uint64, data []byte) error {
	gen, _, err := s.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		gen = 0
	case err != nil:
		return err
	}
	if gen != prevGen {
		return ErrConflict
	}
	b, err := json.Marshal(storageEnvelope{Generation: newGen, Data: data})
	if err != nil {
		return err
	}
	if err := s.storage.Store(ctx, s.key(id), b); err != nil {
		return fmt.Errorf("tokenstore: storing %s: %w", id, err)
	}
	return nil
}

// Delete implements Backend.
func (s *StorageBackend) Delete(ctx context.Context, id string) error {
	err := s.storage.Delete(ctx, s.key(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tokenstore: deleting %s: %w", id, err)
	}
	return nil
}

// List implements Backend.
func (s *StorageBackend) List(ctx context.Context) ([]string, error) {
	keys, err := s.storage.List(ctx, path.Join(s.prefix, "credentials"), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokenstore: listing credentials: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		if base := path.Base(k); strings.HasSuffix(base, ".json") {
			ids = append(ids, strings.TrimSuffix(base, ".json"))
		}
	}
	return ids, nil
}

// Lock implements Backend with the storage's own lock. certmagic locks
// expire through their own staleness rules, so ttl is not used.
func (s *StorageBackend) Lock(ctx context.Context, id string, _ time.Duration) (func(), error) {
	releaseLocal, err := s.local.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	name := path.Join(s.prefix, "locks", id)
	if err := s.storage.Lock(ctx, name); err != nil {
		releaseLocal()
		if ctx.Err() != nil {
			return nil, ErrLockTimeout
		}
		return nil, fmt.Errorf("tokenstore: locking %s: %w", id, err)
	}
	return func() {
		// Unlock with a fresh context: the caller's may have ended, and a
		// lock left behind would stall every instance until it goes stale.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.storage.Unlock(ctx, name)
		releaseLocal()
	}, nil
}

// Close implements Backend.
func (s *StorageBackend) Close() error { return nil }
