package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// takeLease takes the credential's refresh lease for a refresh. A
// proactive refresh on a shared backend makes one attempt (ErrLockBusy):
// an instance holding the lease is refreshing this credential, its token
// arrives by notification, and ours is usable until then; polling the
// lease only adds store traffic (at 10,000 busy users it was 11 lock
// attempts per token request). A client-credentials refresh goes on
// without the lease when the store cannot give it.
func (c *Credential) takeLease(ctx context.Context, reason string) (*lease, error) {
	m := c.m
	c.mu.Lock()
	if l := c.pendingLease; l != nil && time.Since(l.at) < holdPending {
		// This process holds the lease for a write that failed (a full
		// disk, a store refusing writes) and is retried: memory holds
		// the newest pair, and this refresh may spend it. Waiting for
		// the lease would be waiting for ourselves, and the clients
		// would get 503s while a token could be had.
		c.pendingLease = nil
		l.handed = false
		c.mu.Unlock()
		c.setState(StateRefreshing, "")
		return l, nil
	}
	c.mu.Unlock()
	lockCtx, cancelLock := context.WithTimeout(ctx, m.opts.LockWait)
	defer cancelLock()
	lockStart := m.now()
	var release func()
	var err error
	if m.tryLocker != nil && reason == reasonProactive {
		release, err = m.tryLocker.TryLock(lockCtx, c.id, m.opts.LockTTL)
		if errors.Is(err, ErrLockBusy) {
			return nil, err
		}
		c.setState(StateRefreshing, "")
	} else {
		c.setState(StateRefreshing, "")
		release, err = m.backend.Lock(lockCtx, c.id, m.opts.LockTTL)
	}
	m.hooks.lockWait(c, m.now().Sub(lockStart))
	if err != nil {
		if c.spec.Grant != GrantClientCredentials {
			// Without the lock another instance may be spending the same
			// refresh token; presenting it too could revoke the family.
			return nil, c.failTransient(fmt.Errorf("tokenstore: refresh lock unavailable, not refreshing a rotating credential without it: %w", err), 0)
		}
		// Client credentials have nothing to spend twice: go on unlocked.
		m.logger.Warn("refresh lock unavailable; requesting a client-credentials token without it",
			m.logFields(c, "error", err.Error())...)
		release = func() {}
	}
	return &lease{release: release, at: time.Now()}, nil
}

// lease is the refresh lock a refresh holds: released when the refresh
// ends, unless a pending write's retry holds it on (handed).
type lease struct {
	release func()
	at      time.Time // when it was obtained (real time: the TTL is)
	handed  bool
}

// endLease ends a refresh's hold on l. A refresh whose write failed
// handed it to the write's retry; one that took over a pending write's
// lease and ended without writing (its token request failed) hands it
// back, so the write is retried under it; otherwise it is released.
func (c *Credential) endLease(l *lease) {
	if l.handed {
		return
	}
	c.mu.Lock()
	retry := c.pending && c.pendingLease == nil
	if retry {
		l.handed = true
		c.pendingLease = l
	}
	c.mu.Unlock()
	if retry {
		go c.retryUnderHeldLock(l)
		return
	}
	l.release()
}
