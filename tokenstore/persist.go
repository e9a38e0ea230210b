package tokenstore

import (
	"context"
	"errors"
	"time"
)

// persist writes rec (generation rec.Generation) over storedGen. It never
// loses rec: on failure rec stays in memory as a pending write, which a
// background goroutine retries until it lands or a newer record replaces
// it. The caller holds the credential's lock; on failure persist takes
// it over (release), keeping it while it retries: released, another
// instance would refresh from the stored pair, whose refresh token this
// refresh just spent, and the server would revoke the whole family. It
// does so by taking held over (pendingLease), which a later refresh in
// this process may take back (takeLease).
func (c *Credential) persist(ctx context.Context, rec *Record, storedGen uint64, held *lease) {
	c.mu.Lock()
	c.rec = rec.clone()
	c.pending = true
	c.mu.Unlock()

	err := c.m.save(ctx, rec, storedGen)
	if errors.Is(err, ErrConflict) {
		// Someone wrote while we held the lock (our lease must have
		// expired). The pair we just obtained is the newest the server
		// issued, and the one it will accept: write it over theirs.
		if gen, _, gerr := c.m.backend.Get(ctx, c.id); gerr == nil {
			c.m.logger.Warn("generation conflict while holding the refresh lock; storing the newer pair",
				c.m.logFields(c, "stored_generation", gen, "generation", rec.Generation)...)
			rec.Generation = max(rec.Generation, gen+1)
			c.mu.Lock()
			c.rec = rec.clone()
			c.mu.Unlock()
			err = c.m.save(ctx, rec, gen)
		}
	}
	if err == nil {
		c.markPersisted(rec)
		return
	}
	c.m.hooks.storeError(c)
	c.m.logger.Error("could not persist credential; keeping it in memory and retrying",
		c.m.logFields(c, "generation", rec.Generation, "error", err.Error())...)
	held.handed = true
	c.mu.Lock()
	c.pendingLease = held
	c.mu.Unlock()
	go c.retryUnderHeldLock(held)
}

// retryUnderHeldLock retries the pending write while it holds l, the
// lease taken for the refresh (up to holdPending), then releases it and
// goes on with startPersistRetry, which takes a lock per attempt. A
// refresh of this credential may take l over meanwhile (takeLease), and
// the pending write with it: this goroutine then stops.
func (c *Credential) retryUnderHeldLock(l *lease) {
	deadline := l.at.Add(max(holdPending, c.m.opts.LockTTL*3/4))
	wait := 50 * time.Millisecond
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		select {
		case <-time.After(min(wait, left)):
		case <-c.m.ctx.Done():
			c.giveBackLease(l)
			return
		}
		wait = min(wait*2, 2*time.Second)
		if !c.holdsPendingLease(l) {
			return
		}
		ctx, cancel := context.WithTimeout(c.m.ctx, min(c.m.opts.RefreshTimeout, max(time.Until(deadline), time.Second)))
		done := c.writePending(ctx)
		cancel()
		if done {
			c.giveBackLease(l)
			return
		}
	}
	if c.giveBackLease(l) {
		c.startPersistRetry()
	}
}

func (c *Credential) holdsPendingLease(l *lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pendingLease == l
}

// giveBackLease releases l unless a refresh took it over; it reports
// whether it did.
func (c *Credential) giveBackLease(l *lease) bool {
	c.mu.Lock()
	mine := c.pendingLease == l
	if mine {
		c.pendingLease = nil
	}
	c.mu.Unlock()
	if mine {
		l.release()
	}
	return mine
}

// startPersistRetry runs one goroutine per credential that retries the
// pending write with backoff.
func (c *Credential) startPersistRetry() {
	c.mu.Lock()
	if c.persisting {
		c.mu.Unlock()
		return
	}
	c.persisting = true
	c.mu.Unlock()

	go func() {
		defer func() {
			c.mu.Lock()
			c.persisting = false
			c.mu.Unlock()
		}()
		wait := c.m.opts.BackoffBase
		for {
			select {
			case <-time.After(wait):
			case <-c.m.ctx.Done():
				return
			}
			wait = min(wait*2, c.m.opts.BackoffMax)
			if c.retryPendingWrite() {
				return
			}
		}
	}()
}

// retryPendingWrite makes one attempt; it reports whether nothing is
// pending any more.
func (c *Credential) retryPendingWrite() bool {
	ctx, cancel := context.WithTimeout(c.m.ctx, c.m.opts.RefreshTimeout)
	defer cancel()
	lockCtx, cancelLock := context.WithTimeout(ctx, c.m.opts.LockWait)
	release, err := c.m.backend.Lock(lockCtx, c.id, c.m.opts.LockTTL)
	cancelLock()
	if err != nil {
		return false
	}
	defer release()
	return c.writePending(ctx)
}

// writePending writes the pending record, if any, under the lock the
// caller holds; it reports whether nothing is pending any more.
func (c *Credential) writePending(ctx context.Context) bool {
	c.mu.Lock()
	rec, pending := c.rec.clone(), c.pending
	c.mu.Unlock()
	if !pending || rec == nil {
		return true
	}
	gen, _, err := c.m.backend.Get(ctx, c.id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false
	}
	if gen >= rec.Generation {
		// A newer record landed meanwhile (a new seed, an operator's
		// upload, or another instance): ours is superseded, and
		// writing it would roll the credential back.
		c.mu.Lock()
		c.pending = false
		c.mu.Unlock()
		return true
	}
	if err := c.m.save(ctx, rec, gen); err != nil {
		return false
	}
	c.markPersisted(rec)
	c.m.logger.Info("persisted pending credential", c.m.logFields(c, "generation", rec.Generation)...)
	return true
}

// markPersisted records that rec is in the backend and announces it.
func (c *Credential) markPersisted(rec *Record) {
	c.mu.Lock()
	if c.rec != nil && c.rec.Generation == rec.Generation {
		c.pending = false
	}
	c.storedGen = rec.Generation
	c.mu.Unlock()
	c.m.publish(c, rec.Generation)
}

// holdPending is how long a refresh whose write failed keeps the refresh
// lease (extended by the backend) while it retries the write: longer
// than a store's usual hiccup, shorter than the backend's maximum lease.
const holdPending = 30 * time.Second
