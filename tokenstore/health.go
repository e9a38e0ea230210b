package tokenstore

import (
	"fmt"
	"time"
)

// The credential's health: what happens when a refresh fails.

// failSlow records a fault that only a configuration (or operator) change
// fixes, and waits ConfigRetry before trying again.
func (c *Credential) failSlow(err error) error {
	c.mu.Lock()
	h := c.healthLocked()
	h.failures++
	h.state, h.lastErr, h.lastErrValue = StateBackoff, err.Error(), err
	h.backoffUntil = c.m.now().Add(c.m.opts.ConfigRetry)
	c.mu.Unlock()
	c.m.logger.Error("credential needs a configuration or operator change; retrying slowly", c.m.logFields(c, "error", err.Error(),
		"retry_in", c.m.opts.ConfigRetry.String())...)
	return err
}

func (c *Credential) markDead(reason string, fresh, revoked bool) error {
	c.mu.Lock()
	h := c.healthLocked()
	h.state, h.lastErr = StateDead, reason
	if revoked {
		h.lastErrValue = fmt.Errorf("%w: %s", ErrRevoked, reason)
	}
	errVal := h.lastErrValue
	h.deadCheckAt = c.m.now().Add(c.m.opts.DeadRecheck)
	if c.spec.Grant == GrantClientCredentials {
		// Nothing is spent by asking again later (a rotated client secret
		// may have been fixed at the server), but not on every request.
		h.deadCheckAt = c.m.now().Add(c.m.opts.DeadRetryClientCredentials)
	}
	c.mu.Unlock()
	if fresh {
		c.m.hooks.dead(c)
		c.m.emit(c, "dead", 0)
		c.m.logger.Error("credential rejected by the authorization server; requests will fail until it is re-seeded",
			c.m.logFields(c, "error", reason)...)
	}
	if revoked {
		return fmt.Errorf("%w: %w: %s", ErrDead, ErrRevoked, reason)
	}
	if fresh && errVal != nil {
		return fmt.Errorf("%w: %w", ErrDead, errVal)
	}
	return fmt.Errorf("%w: %s", ErrDead, reason)
}

func (c *Credential) failTransient(err error, retryAfter time.Duration) error {
	c.mu.Lock()
	h := c.healthLocked()
	h.failures++
	wait := c.m.opts.BackoffBase << min(h.failures-1, 10)
	wait = min(wait, c.m.opts.BackoffMax)
	if retryAfter > wait {
		wait = min(retryAfter, c.m.opts.BackoffMax)
	}
	h.state, h.lastErr, h.lastErrValue = StateBackoff, err.Error(), err
	h.backoffUntil = c.m.now().Add(wait)
	c.mu.Unlock()
	c.m.logger.Warn("token refresh failed; backing off", c.m.logFields(c, "error", err.Error(), "backoff", wait.String())...)
	return fmt.Errorf("%w: %w", ErrBackoff, err)
}

func (c *Credential) setState(s State, lastErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.health == nil && s == StateHealthy && lastErr == "" {
		return // nothing to remember
	}
	h := c.healthLocked()
	h.state = s
	if s == StateHealthy {
		h.lastErr, h.lastErrValue = lastErr, nil
	}
	if *h == (health{state: StateHealthy}) {
		c.health = nil
	}
}

// recovered forgets every failure: a token was obtained or the record
// replaced. The caller holds c.mu.
func (c *Credential) recoveredLocked() { c.health = nil }
