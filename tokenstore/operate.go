package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Revoker is implemented by Requesters that can revoke tokens at the
// authorization server (RFC 7009).
type Revoker interface {
	// Revoke revokes token; hint is "refresh_token" or "access_token".
	Revoke(ctx context.Context, token, hint string) error
}

// ForceRefresh obtains a new token now, whatever the cached one's expiry.
func (c *Credential) ForceRefresh(ctx context.Context) (*Token, error) {
	c.mu.Lock()
	if c.state == StateDead || c.state == StateBackoff {
		// An operator asking explicitly overrides the wait (not the
		// rule that a rejected refresh token is never re-sent).
		c.deadCheckAt, c.backoffUntil = time.Time{}, time.Time{}
	}
	c.mu.Unlock()
	failed := ""
	if t := c.current.Load(); t != nil {
		failed = t.AccessToken
	}
	return c.refresh(ctx, failed, nil)
}

// Replace stores a new refresh token for the credential (an operator
// re-seeding a dead credential without a restart). The stored record is
// replaced under the lock; the next request uses the new token.
func (c *Credential) Replace(ctx context.Context, refreshToken string) error {
	if c.spec.Grant != GrantRefreshToken {
		return fmt.Errorf("tokenstore: credential %s uses grant %s, which has no refresh token", c.id, c.spec.Grant)
	}
	if refreshToken == "" {
		return errors.New("tokenstore: empty refresh token")
	}
	return c.rewrite(ctx, "replaced", func(rec *Record) {
		rec.RefreshToken = refreshToken
		rec.AccessToken, rec.Expiry, rec.IssuedAt, rec.GrantedScope = "", time.Time{}, time.Time{}, ""
		rec.Dead, rec.LastError = false, ""
	})
}

// Revoke revokes the credential's tokens at the authorization server
// (refresh token first, so no new access tokens can be minted, then the
// access token) and forgets the credential. Revocation is best effort:
// the credential is forgotten even if the server refuses, and the error
// is returned.
func (c *Credential) Revoke(ctx context.Context) error {
	box := c.requester.Load()
	rv, ok := box.r.(Revoker)
	var revokeErr error
	if ok {
		rt, at := c.secretsForRevocation(ctx)
		if rt != "" {
			revokeErr = errors.Join(revokeErr, rv.Revoke(ctx, rt, "refresh_token"))
		}
		if at != "" {
			revokeErr = errors.Join(revokeErr, rv.Revoke(ctx, at, "access_token"))
		}
	} else {
		revokeErr = errors.New("tokenstore: no revocation endpoint known for this credential")
	}
	if err := c.Forget(ctx); err != nil {
		return errors.Join(revokeErr, err)
	}
	return revokeErr
}

// secretsForRevocation reads the newest refresh and access tokens.
func (c *Credential) secretsForRevocation(ctx context.Context) (refreshToken, accessToken string) {
	if rec, err := c.m.load(ctx, c.id); err == nil {
		refreshToken, accessToken = rec.RefreshToken, rec.AccessToken
	}
	c.mu.Lock()
	if c.pending && c.rec != nil {
		refreshToken, accessToken = c.rec.RefreshToken, c.rec.AccessToken
	}
	c.mu.Unlock()
	if t := c.current.Load(); t != nil && accessToken == "" {
		accessToken = t.AccessToken
	}
	return refreshToken, accessToken
}

// Forget deletes the stored record and drops the cached token. A
// refresh-token credential then stays dead (its seed is not re-used: it
// was spent) until a new seed or an upload; a client-credentials one
// simply obtains a new token on the next request.
func (c *Credential) Forget(ctx context.Context) error {
	release, err := c.m.backend.Lock(ctx, c.id, c.m.opts.LockTTL)
	if err != nil {
		return err
	}
	defer release()
	if err := c.m.backend.Delete(ctx, c.id); err != nil {
		return err
	}
	c.current.Store(nil)
	c.mu.Lock()
	c.rec, c.pending, c.storedGen = nil, false, 0
	if c.spec.Grant == GrantRefreshToken {
		c.state, c.lastErr = StateDead, "forgotten by an operator; upload a new refresh token"
		c.deadCheckAt = c.m.now().Add(c.m.opts.DeadRecheck)
	}
	c.mu.Unlock()
	c.m.emit(c, "forgotten", 0)
	return nil
}

// rewrite applies change to the newest record under the lock and stores
// it as a new generation.
func (c *Credential) rewrite(ctx context.Context, kind string, change func(*Record)) error {
	release, err := c.m.backend.Lock(ctx, c.id, c.m.opts.LockTTL)
	if err != nil {
		return err
	}
	defer release()
	stored, err := c.m.load(ctx, c.id)
	var storedGen uint64
	switch {
	case err == nil:
		storedGen = stored.Generation
	case errors.Is(err, ErrNotFound):
		stored = c.freshRecord()
	default:
		return err
	}
	next := stored.clone()
	next.Generation = storedGen + 1
	next.SeedHash = c.seedHash
	next.UpdatedAt = c.m.now()
	change(next)
	if err := c.m.save(ctx, next, storedGen); err != nil {
		return err
	}
	c.current.Store(nil)
	c.mu.Lock()
	c.rec, c.pending, c.storedGen = next, false, next.Generation
	c.state, c.lastErr, c.failures = StateHealthy, "", 0
	c.deadCheckAt, c.backoffUntil = time.Time{}, time.Time{}
	c.mu.Unlock()
	c.m.publish(c, next.Generation)
	c.m.emit(c, kind, next.Generation)
	return nil
}

// ResetBackoff ends a backoff early. Callers use it when they learned
// something that may fix the failure (an upstream challenge named new
// metadata), so the next request tries again instead of waiting.
func (c *Credential) ResetBackoff() {
	c.mu.Lock()
	if c.state == StateBackoff {
		c.backoffUntil = time.Time{}
	}
	c.mu.Unlock()
}
