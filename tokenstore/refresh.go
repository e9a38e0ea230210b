package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// doRefresh is the refresh protocol. It runs inside the credential's
// single-flight, so at most one runs per credential per process; the
// backend lock extends that across processes.
//
//  1. Return early if the token that failed was already replaced.
//  2. Refuse quickly while dead or backing off (do not hammer the server).
//  3. Take the per-credential lock, re-read the store, and adopt a token
//     another instance stored meanwhile instead of spending our refresh token.
//  4. Request a token; persist the new pair (compare-and-swap on the
//     generation) before publishing it; keep it in memory if the write fails.
func (c *Credential) doRefresh(reason, failed string, want []string) (*Token, error) {
	m := c.m
	ctx, cancel := context.WithTimeout(m.ctx, m.opts.RefreshTimeout)
	defer cancel()

	if t := c.reusable(failed, want); t != nil {
		return t, nil
	}
	// The token this refresh replaces: a stored record still holding it
	// has nothing newer to adopt.
	replacing := c.current.Load()
	if err := c.gate(); err != nil {
		return nil, err
	}
	held, err := c.takeLease(ctx, reason)
	if err != nil {
		return nil, err
	}
	defer c.endLease(held)
	// While this refresh waited for the lock, the holder's new token may
	// have arrived (published, and adopted in the background).
	if t := c.reusable(failed, want); t != nil && t != replacing {
		return t, nil
	}

	base, storedGen, adopted, err := c.reconcile(ctx, failed, want, replacing)
	if err != nil {
		return nil, err
	}
	if adopted != nil {
		return adopted, nil
	}
	if base.Dead {
		return nil, c.markDead(base.LastError, false, base.Revoked)
	}
	if base.AccessToken == "" && (reason == reasonExpiry || reason == reasonProactive) {
		reason = reasonInitial
	}

	scopes := UnionScopes(base.Scopes, want)
	req := TokenRequest{Grant: c.spec.Grant, Scopes: scopes, StepUp: len(want) > 0, PinnedIssuer: base.Issuer, Key: base.DPoPKey}
	if c.spec.rotates() {
		req.Grant = GrantRefreshToken
		req.RefreshToken = base.RefreshToken
		if req.RefreshToken == "" && c.spec.Grant == GrantAuthorizationCode {
			c.mu.Lock()
			c.healthLocked().unauthorizedUntil = m.now().Add(unauthorizedRecheck)
			c.mu.Unlock()
			return nil, ErrNeedsAuthorization
		}
		if req.RefreshToken == "" {
			return nil, c.markDead("no refresh token is stored or configured", false, false)
		}
	}

	// The token's lifetime counts from when it was asked for: the server
	// counts from its answer, which may reach us late (a loaded machine,
	// a slow network), and a token believed valid after the server
	// expired it is answered with the upstream's 401.
	asked := m.now()
	res, err := c.requestWithRetry(ctx, req)
	if err != nil {
		return nil, c.handleRequestError(ctx, base, storedGen, err, held)
	}

	now := m.now()
	next := base.clone()
	next.Generation = max(base.Generation, storedGen) + 1
	next.Scopes = scopes
	next.AccessToken = res.AccessToken
	next.TokenType = res.TokenType
	next.IssuedAt = asked
	next.Expiry = time.Time{}
	if res.ExpiresIn > 0 {
		next.Expiry = asked.Add(res.ExpiresIn)
	}
	if res.RefreshToken != "" {
		// Rotation: the old refresh token is spent from now on.
		next.RefreshToken = res.RefreshToken
	}
	next.GrantedScope = ""
	if res.Scopes != nil {
		next.GrantedScope = strings.Join(res.Scopes, " ")
	}
	if next.Issuer == "" {
		next.Issuer = res.Issuer
	}
	if res.TokenEndpoint != "" {
		next.TokenEndpoint = res.TokenEndpoint
	}
	if res.Key != "" {
		next.DPoPKey = res.Key
	}
	next.Dead, next.LastError, next.Revoked = false, "", false
	next.SeedHash = c.seedHash
	next.UpdatedAt = now

	// Persist before anything uses the new pair. A failed write keeps it
	// in memory (the only copy of the new refresh token) and retries.
	c.persist(ctx, next, storedGen, held)

	tok, err := m.newToken(next)
	if err != nil {
		return nil, err
	}
	tok.obtainedAt, tok.reactive = now.UnixNano(), reason == reasonReactive
	c.install(tok)
	c.mu.Lock()
	c.recoveredLocked()
	c.mu.Unlock()
	m.hooks.refreshed(c, reason)
	m.emit(c, "refreshed", next.Generation)
	m.logger.Debug("obtained token", m.logFields(c,
		"reason", reason, "generation", next.Generation,
		"expires_in", res.ExpiresIn.String(), "rotated", res.RefreshToken != "",
		"scopes", next.Scopes)...)
	if now.UnixNano() >= tok.usableUntil {
		// The answer took longer than the token lives (a token endpoint
		// slower than its tokens' lifetime): sent upstream, it would be
		// rejected and the client would see the 401. The new pair is
		// stored; requests are told to retry.
		return nil, c.failTransient(fmt.Errorf("tokenstore: the token expired before its response arrived (the token endpoint took %s, the token lives %s)",
			now.Sub(asked).Round(time.Millisecond), res.ExpiresIn), 0)
	}
	return tok, nil
}

// reusable returns the current token when it already answers the request:
// a 401 for a token that was since replaced, or an expiry refresh that
// another caller finished.
func (c *Credential) reusable(failed string, want []string) *Token {
	t := c.current.Load()
	if t == nil {
		return nil
	}
	now := c.m.now().UnixNano()
	if now >= t.usableUntil || !t.HasScopes(want) {
		return nil
	}
	if failed != "" {
		// A replay must not go out with a token about to expire: the
		// upstream would reject it as well, and the client would see it.
		if t.AccessToken != failed && now < t.refreshAt {
			return t
		}
		return nil
	}
	if len(want) > 0 || now < t.refreshAt {
		return t
	}
	return nil
}

// gate refuses a refresh while the credential is dead or backing off.
func (c *Credential) gate() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health
	if h == nil {
		return nil
	}
	now := c.m.now()
	if now.Before(h.unauthorizedUntil) {
		return ErrNeedsAuthorization
	}
	switch h.state {
	case StateDead:
		if now.Before(h.deadCheckAt) {
			if h.lastErrValue != nil {
				return fmt.Errorf("%w: %w", ErrDead, h.lastErrValue)
			}
			return fmt.Errorf("%w: %s", ErrDead, h.lastErr)
		}
		// Time to look again: the store may hold a newer credential
		// (another instance or an operator re-seeded it). reconcile
		// decides; a still-dead record is not presented again.
		h.deadCheckAt = now.Add(c.m.opts.DeadRecheck)
	case StateBackoff:
		if now.Before(h.backoffUntil) {
			if h.lastErrValue != nil {
				return fmt.Errorf("%w for %s: %w", ErrBackoff, h.backoffUntil.Sub(now).Round(time.Millisecond), h.lastErrValue)
			}
			return fmt.Errorf("%w for %s: %s", ErrBackoff, h.backoffUntil.Sub(now).Round(time.Millisecond), h.lastErr)
		}
	}
	return nil
}

// reconcile re-reads the store under the lock and picks the record to
// refresh from. It adopts a usable token stored by another instance.
func (c *Credential) reconcile(ctx context.Context, failed string, want []string, replacing *Token) (base *Record, storedGen uint64, adopted *Token, err error) {
	m := c.m
	stored, err := m.load(ctx, c.id)
	if errors.Is(err, ErrUnreadable) {
		// Fail closed: the record holds the issuer pin and perhaps the
		// only refresh token. Overwriting it would lose both.
		m.logger.Error("stored credential cannot be read; not overwriting it (check encryption_key, or remove the record to start over)",
			m.logFields(c, "error", err.Error())...)
		return nil, 0, nil, c.failSlow(err)
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		if c.spec.Grant != GrantClientCredentials {
			return nil, 0, nil, c.failTransient(fmt.Errorf("tokenstore: store unavailable, not refreshing a rotating credential without it: %w", err), 0)
		}
		m.logger.Warn("store unavailable; client-credentials token kept in memory only", m.logFields(c, "error", err.Error())...)
		stored, err = nil, nil
		c.mu.Lock()
		storedGen = c.storedGen
		c.mu.Unlock()
	}
	if stored != nil {
		storedGen = stored.Generation
	}

	c.mu.Lock()
	local, pending := c.rec, c.pending
	c.storedGen = storedGen
	c.mu.Unlock()

	switch {
	case !pending && storeWentBack(local, stored, c.seedHash):
		// The store holds an older generation than this process wrote or
		// read (a restored backup, an older append-only file, a rollback
		// by someone with write access): its refresh token may be spent. The
		// pair in memory is the one the server accepts: write it back,
		// as when the store comes back empty. (Before the configured-seed
		// case: an older record may carry a seed this process spent.)
		m.logger.Warn("store went back to an older generation of the credential; restoring the newer one from memory",
			m.logFields(c, "stored_generation", stored.Generation, "generation", local.Generation)...)
		base = local
	case stored != nil && stored.SeedHash != c.seedHash && c.spec.Grant == GrantRefreshToken:
		// The configured seed changed: it replaces the stored credential.
		m.logger.Info("configured refresh token changed; replacing the stored credential", m.logFields(c)...)
		base = c.freshRecord()
		base.Generation = stored.Generation
		if base.Issuer == "" {
			// The pin outlives a new seed: only an issuer in the
			// configuration or an operator's unpin moves it.
			base.Issuer = stored.Issuer
		}
	case pending && local != nil && (stored == nil || local.Generation > stored.Generation):
		// Our own write failed earlier: memory holds the newest pair.
		base = local
	case stored == nil && local != nil && local.Generation > 0 && local.SeedHash == c.seedHash:
		// The store lost a credential we know (a Redis restart without
		// persistence, a wiped directory). The seed is spent; the pair in
		// memory is the one the server accepts: write it back.
		m.logger.Warn("store lost the credential; restoring it from memory", m.logFields(c, "generation", local.Generation)...)
		base = local
	case stored != nil:
		base = stored
	default:
		base = c.freshRecord()
	}

	if base == stored && stored != nil && !stored.Dead {
		c.mu.Lock()
		c.rec = stored.clone()
		c.pending = false
		c.mu.Unlock()
		// Adopt only a token other than the one this refresh replaces
		// (another instance's refresh): that one is why it refreshes, and
		// would come back with a new (random) refresh point.
		if stored.AccessToken != "" && stored.AccessToken != failed &&
			(replacing == nil || replacing.AccessToken != stored.AccessToken) {
			t, terr := m.newToken(stored)
			now := m.now().UnixNano()
			if terr == nil && now < t.usableUntil && t.HasScopes(want) && (len(want) > 0 || now < t.refreshAt) {
				c.install(t)
				c.setState(StateHealthy, "")
				m.hooks.adopted(c)
				m.emit(c, "adopted", stored.Generation)
				m.logger.Debug("adopted token from store", m.logFields(c, "generation", stored.Generation)...)
				return nil, storedGen, t, nil
			}
		}
	}
	return base, storedGen, nil, nil
}

// storeWentBack reports whether stored is older than local, the record
// this process holds (read or written here, same seed): the store went
// back to an older generation. Generations only grow in a store that was
// not rolled back, so a lower one is an older copy, unless the record was
// deleted and written anew since (another instance re-seeding after an
// operator removed it): that one is newer than local by its UpdatedAt
// and wins. An attacker cannot forge UpdatedAt under encryption_key; a
// restored copy carries its old one.
func storeWentBack(local, stored *Record, seedHash string) bool {
	return local != nil && stored != nil && local.Generation > stored.Generation &&
		local.SeedHash == seedHash && !stored.UpdatedAt.After(local.UpdatedAt)
}

// freshRecord is the record a credential starts from: the configuration.
func (c *Credential) freshRecord() *Record {
	return &Record{
		ID:            c.id,
		Resource:      c.spec.Resource,
		ClientID:      c.spec.ClientID,
		Grant:         c.spec.Grant,
		Issuer:        c.spec.Issuer,
		TokenEndpoint: c.spec.TokenEndpoint,
		Scopes:        append([]string(nil), c.spec.Scopes...),
		SeedHash:      c.seedHash,
		RefreshToken:  c.spec.SeedRefreshToken,
	}
}

// requestWithRetry retries transient failures a bounded number of times.
func (c *Credential) requestWithRetry(ctx context.Context, req TokenRequest) (*TokenResult, error) {
	box := c.requester.Load()
	if box == nil {
		return nil, errors.New("tokenstore: no token requester configured")
	}
	var lastErr error
	for attempt := 0; attempt < c.m.opts.Attempts; attempt++ {
		if attempt > 0 {
			wait := c.m.opts.RetryBase << (2 * (attempt - 1)) // 1x, 4x, 16x
			if ra := retryAfter(lastErr); ra > wait {
				wait = min(ra, c.m.opts.MaxRetryWait)
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, lastErr
			}
		}
		start := c.m.now()
		res, err := box.r.RequestToken(ctx, req)
		c.m.hooks.tokenRequest(c, req.Grant, err, c.m.now().Sub(start))
		if err == nil {
			if res.AccessToken == "" {
				return nil, errors.New("tokenstore: token response without access_token")
			}
			return res, nil
		}
		lastErr = err
		if !isTransient(err) {
			return nil, err
		}
		c.m.logger.Debug("token request failed, will retry", c.m.logFields(c, "attempt", attempt+1, "error", err.Error())...)
	}
	return nil, lastErr
}

// handleRequestError classifies a failed token request and updates state.
func (c *Credential) handleRequestError(ctx context.Context, base *Record, storedGen uint64, err error, held *lease) error {
	var ce ClassifiedError
	switch {
	case errors.As(err, &ce) && ce.Permanent():
		if c.spec.rotates() {
			// Record the death so other instances do not present the
			// rejected token again; a new seed or upload revives it.
			dead := base.clone()
			dead.Generation = max(base.Generation, storedGen) + 1
			dead.Dead, dead.LastError = true, err.Error()
			dead.UpdatedAt = c.m.now()
			dead.SeedHash = c.seedHash
			c.persist(ctx, dead, storedGen, held)
		}
		c.mu.Lock()
		c.healthLocked().lastErrValue = err
		c.mu.Unlock()
		return c.markDead(err.Error(), true, false)
	case isTransient(err):
		return c.failTransient(err, retryAfter(err))
	default:
		// The request was refused as configured (unsupported_grant_type,
		// unauthorized_client, invalid_scope, invalid_target, no
		// metadata): the credential may be fine, but asking again at once
		// cannot help. Retry slowly and say what to change.
		return c.failSlow(fmt.Errorf("%w: %w", ErrConfiguration, err))
	}
}

func isTransient(err error) bool {
	var ce ClassifiedError
	if errors.As(err, &ce) {
		return ce.Transient()
	}
	// Network errors, timeouts and anything unclassified: the credential
	// itself was not judged, so keep it and retry.
	return true
}

func retryAfter(err error) time.Duration {
	var ra interface{ RetryAfterDuration() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfterDuration()
	}
	return 0
}
