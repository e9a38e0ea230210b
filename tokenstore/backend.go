package tokenstore

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound is returned by Backend.Get for an unknown credential.
	ErrNotFound = errors.New("tokenstore: credential not found")
	// ErrConflict is returned by Backend.CompareAndSwap when the stored
	// generation is not the expected one: someone else wrote first.
	ErrConflict = errors.New("tokenstore: generation conflict")
	// ErrLockTimeout is returned by Backend.Lock when the lock could not
	// be taken before the context ended.
	ErrLockTimeout = errors.New("tokenstore: timed out waiting for the refresh lock")
	// ErrLockBusy is returned by TryLocker.TryLock when another owner
	// holds the lease.
	ErrLockBusy = errors.New("tokenstore: the refresh lock is held by another instance")
)

// TryLocker is implemented by backends shared between instances: TryLock
// takes the lease only if it is free now (one attempt), else returns
// ErrLockBusy. Proactive refreshes use it, so instances whose refresh
// points fall while another one refreshes do not poll the lease.
type TryLocker interface {
	TryLock(ctx context.Context, id string, ttl time.Duration) (release func(), err error)
}

// Backend is where sealed credential records persist. The generation is kept
// beside the (possibly encrypted) data so compare-and-swap works without the
// backend being able to read the record. Get must report the generation
// stored with the data: a sealed record is bound to the generation it was
// written as, and opens only under it.
//
// Implementations must be safe for concurrent use.
type Backend interface {
	// Get returns the stored generation and data, or ErrNotFound.
	Get(ctx context.Context, id string) (gen uint64, data []byte, err error)

	// CompareAndSwap stores data under id with generation newGen if the
	// stored generation is prevGen (0 meaning "absent"), and returns
	// ErrConflict otherwise. Backends that cannot do this atomically
	// (Caddy storage) rely on the caller holding Lock(id).
	CompareAndSwap(ctx context.Context, id string, prevGen, newGen uint64, data []byte) error

	// Delete removes the record; deleting an absent record is not an error.
	Delete(ctx context.Context, id string) error

	// List returns the ids of all stored records.
	List(ctx context.Context) ([]string, error)

	// Lock takes the per-credential refresh lease, waiting until ctx ends
	// (ErrLockTimeout). The lease expires by itself after ttl, so a
	// crashed holder cannot block refresh forever. release is safe to call
	// once; it must not release a lease that expired and was taken by
	// another owner.
	Lock(ctx context.Context, id string, ttl time.Duration) (release func(), err error)

	// Close releases the backend's resources.
	Close() error
}

// Notifier is implemented by backends shared between instances (Redis): it
// announces new generations so every instance drops stale cached tokens
// without waiting for a 401.
type Notifier interface {
	// Publish announces that id now has generation gen.
	Publish(ctx context.Context, id string, gen uint64) error
	// Subscribe calls fn for every announcement until ctx ends.
	Subscribe(ctx context.Context, fn func(id string, gen uint64)) error
}
