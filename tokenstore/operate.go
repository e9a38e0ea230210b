package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Revoker is implemented by Requesters that can revoke tokens at the
// authorization server (RFC 7009).
type Revoker interface {
	// Revoke revokes token (hint "refresh_token" or "access_token") at
	// the revocation endpoint of pinnedIssuer, the authorization server
	// the credential is bound to ("" before the first token). It must not
	// send the token or the client's secret to any other server, and
	// returns ErrNoRevocationEndpoint when there is no endpoint to use.
	Revoke(ctx context.Context, pinnedIssuer, token, hint string) error
}

// ForceRefresh obtains a new token now, whatever the cached one's expiry.
func (c *Credential) ForceRefresh(ctx context.Context) (*Token, error) {
	c.mu.Lock()
	if s := c.stateLocked(); s == StateDead || s == StateBackoff {
		// An operator asking explicitly overrides the wait (not the
		// rule that a rejected refresh token is never re-sent).
		c.health.deadCheckAt, c.health.backoffUntil = time.Time{}, time.Time{}
	}
	c.mu.Unlock()
	failed := ""
	if t := c.current.Load(); t != nil {
		failed = t.AccessToken
	}
	return c.refresh(ctx, reasonOperator, failed, nil)
}

// Replace stores a new refresh token for the credential (an operator
// re-seeding a dead credential without a restart). The stored record is
// replaced under the lock, keeping its issuer pin; the next request uses
// the new token.
func (c *Credential) Replace(ctx context.Context, refreshToken string) error {
	if !c.spec.rotates() {
		return fmt.Errorf("tokenstore: credential %s uses grant %s, which has no refresh token", c.id, c.spec.Grant)
	}
	if refreshToken == "" {
		return errors.New("tokenstore: empty refresh token")
	}
	return c.rewrite(ctx, "replaced", func(rec *Record) error {
		rec.RefreshToken = refreshToken
		clearTokens(rec)
		rec.Dead, rec.LastError, rec.Revoked = false, "", false
		return nil
	})
}

// BoundIssuer is the authorization server the credential is bound to
// ("" while it is bound to none), read from the store under the
// credential's lock: memory is no authority for a binding, since it is
// empty after a restart, an eviction from the cache, or on another
// instance of a fleet. Every flow that may send a secret, a code or a
// token reads the binding here before it starts. An unreadable stored
// record is an error (ErrUnreadable): the binding it holds is unknown.
func (c *Credential) BoundIssuer(ctx context.Context) (string, error) {
	if c.spec.Issuer != "" {
		return c.spec.Issuer, nil // the configuration pins it
	}
	release, err := c.m.backend.Lock(ctx, c.id, c.m.opts.LockTTL)
	if err != nil {
		return "", err
	}
	defer release()
	rec, err := c.latestRecord(ctx)
	if err != nil {
		return "", err
	}
	return rec.Issuer, nil
}

// ErrIssuerBound is returned by Authorized when the credential is bound to
// another authorization server than the one the authorization came from:
// a completed flow never moves a binding (only the configuration or an
// operator's Unpin does).
var ErrIssuerBound = errors.New("tokenstore: the credential is bound to another authorization server")

// Authorized stores the tokens a completed authorization (code exchange)
// returned, bound to issuer: the credential is usable from now on, and
// its refresh token is what later refreshes present. A credential bound
// to another issuer is left as it is (ErrIssuerBound); a credential bound
// to none keeps nothing of what it held before (no refresh token or key
// crosses issuers).
func (c *Credential) Authorized(ctx context.Context, res *TokenResult, issuer string, scopes []string) error {
	if res == nil || res.AccessToken == "" {
		return errors.New("tokenstore: authorization without an access token")
	}
	if issuer == "" {
		return errors.New("tokenstore: authorization without an issuer")
	}
	now := c.m.now()
	err := c.rewrite(ctx, "authorized", func(rec *Record) error {
		if rec.Issuer != "" && rec.Issuer != issuer {
			return fmt.Errorf("%w: credential %s is bound to %s, the authorization came from %s", ErrIssuerBound, c.id, rec.Issuer, issuer)
		}
		if rec.Issuer != issuer {
			// Bound to no server yet: whatever the record held was not
			// issued by this one.
			rec.RefreshToken, rec.DPoPKey, rec.TokenEndpoint = "", "", ""
		}
		rec.Issuer = issuer
		if res.TokenEndpoint != "" {
			rec.TokenEndpoint = res.TokenEndpoint
		}
		rec.AccessToken, rec.TokenType, rec.IssuedAt = res.AccessToken, res.TokenType, now
		rec.Expiry = time.Time{}
		if res.ExpiresIn > 0 {
			rec.Expiry = now.Add(res.ExpiresIn)
		}
		if res.RefreshToken != "" {
			rec.RefreshToken = res.RefreshToken
		}
		if res.Key != "" {
			rec.DPoPKey = res.Key
		}
		rec.Scopes = append([]string(nil), scopes...)
		rec.GrantedScope = strings.Join(res.Scopes, " ")
		rec.Dead, rec.LastError, rec.Revoked = false, "", false
		return nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	rec := c.rec.clone()
	c.mu.Unlock()
	tok, err := c.m.newToken(rec)
	if err != nil {
		return err
	}
	tok.obtainedAt = now.UnixNano()
	c.install(tok)
	c.m.hooks.refreshed(c, reasonInitial)
	return nil
}

// Unpin binds the credential to another authorization server, named by
// an operator: the one explicit way, besides a configuration change, to
// move a pin. Tokens of the old server are dropped (they mean nothing to
// the new one); a refresh-token credential then waits for an upload of a
// refresh token issued by the new server.
func (c *Credential) Unpin(ctx context.Context, issuer string) error {
	if c.spec.Issuer != "" {
		return fmt.Errorf("tokenstore: credential %s is pinned by its configuration (issuer %s); change the configuration instead", c.id, c.spec.Issuer)
	}
	if issuer == "" {
		return errors.New("tokenstore: unpin needs the new issuer")
	}
	return c.rewrite(ctx, "unpinned", func(rec *Record) error {
		rec.Issuer = issuer
		rec.TokenEndpoint = ""
		clearTokens(rec)
		rec.RefreshToken = ""
		rec.Dead, rec.LastError, rec.Revoked = false, "", false
		if c.spec.rotates() {
			rec.Dead, rec.LastError = true, "pinned to a new authorization server by an operator; upload a refresh token it issued"
		}
		return nil
	})
}

// RevokeResult says what Revoke did.
type RevokeResult struct {
	// RefreshTokenRevoked and AccessTokenRevoked are set when the server
	// accepted the revocation of that token.
	RefreshTokenRevoked bool `json:"refresh_token_revoked"`
	AccessTokenRevoked  bool `json:"access_token_revoked"`
	// Warning describes a partial failure that did not stop the revoke
	// (the access token could not be revoked after the refresh token was).
	Warning string `json:"warning,omitempty"`
}

// Revoke revokes the credential's tokens at its pinned authorization
// server (refresh token first, so no new access tokens can be minted, then
// the access token) and then forgets them locally. It revokes or changes
// nothing: without a revocation endpoint it returns ErrNoRevocationEndpoint,
// and when the server refuses the first revocation it returns that error;
// in both cases the credential is left as it was.
func (c *Credential) Revoke(ctx context.Context) (RevokeResult, error) {
	var res RevokeResult
	rv, ok := c.requester.Load().r.(Revoker)
	if !ok {
		return res, ErrNoRevocationEndpoint
	}
	rec, err := c.latestRecord(ctx)
	if err != nil {
		return res, err
	}
	at := rec.AccessToken
	if t := c.current.Load(); t != nil && at == "" {
		at = t.AccessToken
	}
	first, firstHint, second := rec.RefreshToken, "refresh_token", at
	if first == "" {
		first, firstHint, second = at, "access_token", ""
	}
	if first != "" {
		if err := rv.Revoke(ctx, rec.Issuer, first, firstHint); err != nil {
			return res, err
		}
		res.RefreshTokenRevoked = firstHint == "refresh_token"
		res.AccessTokenRevoked = firstHint == "access_token"
	}
	if second != "" {
		if err := rv.Revoke(ctx, rec.Issuer, second, "access_token"); err != nil {
			res.Warning = "the refresh token was revoked, but revoking the access token failed: " + err.Error()
		} else {
			res.AccessTokenRevoked = true
		}
	}
	return res, c.forget(ctx, "revoked by an operator")
}

// latestRecord is the newest record: a pending (unpersisted) one in
// memory, else the stored one, else the configuration.
func (c *Credential) latestRecord(ctx context.Context) (*Record, error) {
	c.mu.Lock()
	if c.pending && c.rec != nil {
		rec := c.rec.clone()
		c.mu.Unlock()
		return rec, nil
	}
	c.mu.Unlock()
	rec, err := c.m.load(ctx, c.id)
	if errors.Is(err, ErrNotFound) {
		return c.freshRecord(), nil
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if storeWentBack(c.rec, rec, c.seedHash) {
		return c.rec.clone(), nil // memory is newer than a store that went back
	}
	return rec, nil
}

// Forget drops the credential's tokens without revoking them. The record
// stays, tokenless, so the issuer pin survives: a client-credentials
// credential obtains a new token (from the same server) on the next
// request; a refresh-token credential stays dead until a new seed or an
// upload (its seed was spent).
func (c *Credential) Forget(ctx context.Context) error {
	return c.forget(ctx, "forgotten by an operator")
}

func (c *Credential) forget(ctx context.Context, why string) error {
	err := c.rewrite(ctx, "forgotten", func(rec *Record) error {
		clearTokens(rec)
		rec.RefreshToken = ""
		rec.Revoked, rec.LastError, rec.Dead = true, why, false
		if c.spec.rotates() {
			rec.Dead, rec.LastError = true, why+"; upload a new refresh token"
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.spec.rotates() {
		_ = c.markDead(why+"; upload a new refresh token", false, true)
	}
	return nil
}

func clearTokens(rec *Record) {
	rec.AccessToken, rec.TokenType, rec.GrantedScope = "", "", ""
	rec.Expiry, rec.IssuedAt = time.Time{}, time.Time{}
}

// rewrite applies change to the newest record under the lock and stores
// it as a new generation. A stored record that cannot be read is not
// overwritten (ErrUnreadable); a change that returns an error writes
// nothing.
func (c *Credential) rewrite(ctx context.Context, kind string, change func(*Record) error) error {
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
	c.mu.Lock()
	if c.rec != nil && c.rec.Generation > storedGen && (c.pending || (storedGen > 0 && storeWentBack(c.rec, stored, c.seedHash))) {
		// Memory holds a newer pair than the store (a write failed, or
		// the store went back to an older generation): start from it.
		stored = c.rec.clone()
	}
	c.mu.Unlock()
	next := stored.clone()
	next.Generation = max(storedGen, stored.Generation) + 1
	next.SeedHash = c.seedHash
	next.UpdatedAt = c.m.now()
	if err := change(next); err != nil {
		return err
	}
	if err := c.m.save(ctx, next, storedGen); err != nil {
		return err
	}
	c.current.Store(nil)
	c.mu.Lock()
	c.rec, c.pending, c.storedGen = next, false, next.Generation
	c.recoveredLocked()
	if next.Dead {
		h := c.healthLocked()
		h.state, h.lastErr = StateDead, next.LastError
		h.deadCheckAt = c.m.now().Add(c.m.opts.DeadRecheck)
	}
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
	if c.stateLocked() == StateBackoff {
		c.health.backoffUntil = time.Time{}
	}
	c.mu.Unlock()
}

// Migrate lets go of the authorization server from, for a credential
// whose tokens and client the gateway obtained itself (MCP 2026-07-28,
// SEP-2352: never reused with another server). Under the lock, when the
// credential is still bound to from: its refresh token is revoked at from
// where the server offers RFC 7009 (best effort; the error is returned
// beside success), then its tokens, key and binding are dropped and it
// waits for a new consent, with why as its last error. It reports whether
// this call migrated it (false: already bound elsewhere or to nothing).
func (c *Credential) Migrate(ctx context.Context, from, why string) (migrated bool, revokeErr error) {
	rec, err := c.latestRecord(ctx)
	if err != nil {
		return false, err
	}
	if rec.Issuer == "" || rec.Issuer != from {
		return false, nil
	}
	if rv, ok := c.requester.Load().r.(Revoker); ok && rec.RefreshToken != "" {
		revokeErr = rv.Revoke(ctx, from, rec.RefreshToken, "refresh_token")
	}
	err = c.rewrite(ctx, "migrated", func(next *Record) error {
		if next.Issuer != from {
			return errNotMigrated
		}
		clearTokens(next)
		next.RefreshToken, next.DPoPKey, next.TokenEndpoint, next.Issuer = "", "", "", ""
		next.Dead, next.LastError, next.Revoked = true, why, false
		return nil
	})
	if errors.Is(err, errNotMigrated) {
		return false, revokeErr
	}
	if err != nil {
		return false, err
	}
	return true, revokeErr
}

var errNotMigrated = errors.New("tokenstore: bound elsewhere meanwhile")
