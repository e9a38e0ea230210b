package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// State is a credential's health, as shown to operators.
type State string

// Credential states.
const (
	StateHealthy    State = "healthy"
	StateRefreshing State = "refreshing"
	StateBackoff    State = "backoff"
	StateDead       State = "dead"
)

// ErrDead is wrapped by errors returned for a credential the authorization
// server rejected for good. It stays dead until an operator or the
// configuration supplies a new seed, or another instance stores a newer one.
var ErrDead = errors.New("tokenstore: credential rejected by the authorization server")

// ErrBackoff is wrapped by errors returned while a credential waits after
// transient failures, so the token endpoint is not hammered.
var ErrBackoff = errors.New("tokenstore: token endpoint failing, backing off")

// ErrScopeNotGrantable is returned by StepUp for a credential whose grant
// cannot widen scope (a refresh cannot, RFC 6749 §6).
var ErrScopeNotGrantable = errors.New("tokenstore: this credential's grant cannot obtain additional scopes")

// Credential is one credential's live state: the cached token, the latest
// record, and the refresh machinery. Handlers hold a *Credential and call
// Token on every request.
type Credential struct {
	id string
	// spec is shared by every principal's credential of one handler
	// (per-user credentials differ only in principal), so 100,000 users
	// do not hold 100,000 copies of the configuration.
	spec      *Spec
	principal string
	seedHash  string
	m         *Manager

	requester atomic.Pointer[requesterBox]
	// current is the token requests use. Reading it is the whole hot path.
	current atomic.Pointer[Token]
	flight  singleflight.Group
	// background is set while a proactive refresh is running.
	background atomic.Bool
	// used is set by requests and cleared when a token is installed and
	// when the refresh scheduler looks: a credential nobody used during
	// a token's lifetime is not refreshed ahead of time.
	used atomic.Bool

	// releasedAt (Unix nanoseconds, 0 while in use) and users are
	// guarded by the manager's mutex.
	releasedAt int64

	mu        sync.Mutex
	rec       *Record // latest record known here (persisted or pending)
	storedGen uint64  // generation last seen in the backend
	pending   bool    // rec is newer than the backend: a write failed
	// persisting is set while a goroutine retries the pending write.
	persisting bool
	// users counts the handlers holding the credential (beside the two
	// flags: with them it fills one word, which keeps the struct in the
	// 160-byte size class).
	users int32
	// pendingLease is the refresh lease held while a failed write is
	// retried (persist.go); a refresh in this process takes it over
	// instead of waiting for it.
	pendingLease *lease
	// health is nil while the credential is healthy with no failure to
	// remember, which is nearly always: most credentials never carry it.
	health *health
}

// health is what a credential remembers about failures (guarded by the
// credential's mutex).
type health struct {
	state        State
	lastErr      string
	lastErrValue error // the error behind lastErr, for callers to inspect
	failures     int
	backoffUntil time.Time
	deadCheckAt  time.Time
	// unauthorizedUntil: the store was read moments ago and held no
	// authorization for this (authorization-code) credential; requests
	// until then are answered without reading it again.
	unauthorizedUntil time.Time
}

// healthLocked returns the credential's health record, creating it; the
// caller holds c.mu.
func (c *Credential) healthLocked() *health {
	if c.health == nil {
		c.health = &health{state: StateHealthy}
	}
	return c.health
}

// stateLocked is the credential's state; the caller holds c.mu.
func (c *Credential) stateLocked() State {
	if c.health == nil || c.health.state == "" {
		return StateHealthy
	}
	return c.health.state
}

// unauthorizedRecheck is how long "not authorized yet" is believed
// without reading the store again (another instance's callback may have
// stored the consent meanwhile).
const unauthorizedRecheck = 2 * time.Second

type requesterBox struct{ r Requester }

// ID returns the credential's identifier.
func (c *Credential) ID() string { return c.id }

// Spec returns the credential's configuration.
func (c *Credential) Spec() Spec {
	s := *c.spec
	s.Principal = c.principal
	return s
}

// SetRequester replaces the Requester, e.g. after a config reload changed
// the client secret.
func (c *Credential) SetRequester(r Requester) { c.requester.Store(&requesterBox{r}) }

// Token returns a token to inject. While the cached token is fresh this is
// an atomic load and a clock read; near expiry one background refresh
// starts while requests keep using the current token; past that, callers
// wait for one shared refresh.
func (c *Credential) Token(ctx context.Context) (*Token, error) {
	t, _, err := c.Acquire(ctx)
	return t, err
}

// Acquire is Token that also reports whether the cached token was used
// (true) or the caller waited for one (false).
func (c *Credential) Acquire(ctx context.Context) (tok *Token, cached bool, err error) {
	if t := c.cachedToken(); t != nil {
		return t, true, nil
	}
	t, err := c.refresh(ctx, reasonExpiry, "", nil)
	return t, false, err
}

// AcquireWithin is Acquire that waits at most wait for a token when none
// is usable; the refresh itself goes on in the background. The hot path
// (a cached token) allocates nothing for the bound.
func (c *Credential) AcquireWithin(ctx context.Context, wait time.Duration) (tok *Token, cached bool, err error) {
	if t := c.cachedToken(); t != nil {
		return t, true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t, err := c.refresh(ctx, reasonExpiry, "", nil)
	return t, false, err
}

// cachedToken is the hot path: it marks the credential used and returns
// the token requests may use now, starting one background refresh once
// the token is past its refresh point; nil when requests must wait.
func (c *Credential) cachedToken() *Token {
	if !c.used.Load() {
		c.used.Store(true) // a load first: the common case writes nothing
	}
	t := c.current.Load()
	if t == nil {
		return nil
	}
	now := c.m.now().UnixNano()
	if now < t.refreshAt {
		return t
	}
	if now < t.usableUntil {
		c.refreshInBackground()
		return t
	}
	return nil
}

// install makes tok the token requests use, schedules its refresh point
// and records it in the bounded cache.
func (c *Credential) install(tok *Token) {
	c.current.Store(tok)
	c.mu.Lock()
	if r := c.rec; r != nil && r.AccessToken == tok.AccessToken {
		// Hold the access token once: the record takes the token's copy
		// (the tail of its header) and its own is freed. Records are
		// never changed in place (readers may hold one unlocked), so
		// this is a new one.
		shared := r.clone()
		shared.AccessToken = tok.AccessToken
		c.rec = shared
	}
	c.mu.Unlock()
	// Uses so far were of the previous token, including the request
	// that asked for this one: a credential used once every few token
	// lifetimes would otherwise be refreshed ahead of time after every
	// use, two token requests per use (measured: 2.97 per credential in
	// use and lifetime at 100,000 users before this).
	c.used.Store(false)
	c.scheduleRefresh(tok)
	c.m.touch(c)
}

// scheduleRefresh asks the manager's scheduler to look at the credential
// at tok's refresh point: if it was used since the last look, it is
// refreshed in the background then, so requests after an idle spell
// shorter than the token's lifetime find a fresh token. With a shared
// store the lock makes it one refresh per fleet (the other instances
// adopt it).
func (c *Credential) scheduleRefresh(tok *Token) {
	if tok.refreshAt == timeForever {
		return
	}
	c.m.scheduler.schedule(c, tok, time.Duration(tok.refreshAt-c.m.now().UnixNano()))
}

// atRefreshPoint runs when tok reaches its refresh point.
func (c *Credential) atRefreshPoint(tok *Token) {
	if c.m.ctx.Err() != nil || c.current.Load() != tok {
		return // closed, evicted, or replaced meanwhile
	}
	if c.used.Swap(false) {
		c.refreshInBackground()
	}
}

// Cached returns the current token without refreshing, or nil.
func (c *Credential) Cached() *Token { return c.current.Load() }

// Invalidate is called when an upstream rejected failed (401). It refreshes
// at most once for that token: if another request already replaced it, the
// replacement is returned without a token request. A token that was itself
// obtained after a rejection less than ReactiveRefreshInterval ago, and that
// no upstream ever accepted, is not refreshed again (ErrRejectedAgain): the
// upstream is rejecting fresh tokens, and the token endpoint must not
// follow it one to one. A token that served requests and is then rejected
// was revoked: it is refreshed at once, however recently it came.
func (c *Credential) Invalidate(ctx context.Context, failed string) (*Token, error) {
	// Only while the token is well within its life: one rejected near
	// its expiry (short-lived tokens, a slow hop to the upstream) was
	// rejected for expiring, and is refreshed like any other.
	now := c.m.now().UnixNano()
	if t := c.current.Load(); t != nil && failed != "" && t.AccessToken == failed && t.reactive && !t.accepted.Load() &&
		time.Duration(now-t.obtainedAt) < c.m.opts.ReactiveRefreshInterval && now < t.refreshAt {
		c.m.hooks.rejectedAgain(c)
		return nil, ErrRejectedAgain
	}
	return c.refresh(ctx, reasonReactive, failed, nil)
}

// StepUp obtains a token carrying every scope in want (plus those already
// held), persists the widened scope set, and returns it. Only grants that
// can widen scope support it (client credentials).
func (c *Credential) StepUp(ctx context.Context, want []string, failed string) (*Token, error) {
	if c.spec.Grant != GrantClientCredentials {
		return nil, ErrScopeNotGrantable
	}
	if t := c.current.Load(); t != nil && t.AccessToken != failed && t.HasScopes(want) && c.m.now().UnixNano() < t.usableUntil {
		return t, nil
	}
	held := c.spec.Scopes
	if t := c.current.Load(); t != nil {
		held = t.Scopes
	}
	if len(UnionScopes(held, want)) > MaxScopes {
		return nil, fmt.Errorf("%w: more than %d", ErrScopeLimit, MaxScopes)
	}
	return c.refresh(ctx, reasonStepUp, failed, want)
}

// Why a token is requested; logged, and counted by kind in the metrics.
const (
	reasonInitial   = "initial"   // the credential held no access token yet
	reasonProactive = "proactive" // ahead of expiry, in the background
	reasonExpiry    = "expiry"    // a request found the token expired
	reasonReactive  = "reactive"  // the upstream rejected the token (401)
	reasonStepUp    = "step_up"   // the upstream asked for more scope (403)
	reasonOperator  = "operator"  // the admin API asked for a refresh
)

// refresh runs at most one refresh of this credential at a time; callers
// arriving meanwhile share its result (and the first caller's reason).
func (c *Credential) refresh(ctx context.Context, reason, failed string, want []string) (*Token, error) {
	key := "refresh"
	if len(want) > 0 {
		key = fmt.Sprint("stepup", want)
	}
	if c.m.tryLocker != nil && reason == reasonProactive {
		// A proactive refresh may give up on a busy lease (ErrLockBusy):
		// a request that needs a token must not share that answer.
		key = "proactive"
	}
	ch := c.flight.DoChan(key, func() (any, error) {
		return c.doRefresh(reason, failed, want)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Token), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshInBackground starts one proactive refresh unless one is running.
func (c *Credential) refreshInBackground() {
	if !c.background.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.background.Store(false)
		ctx, cancel := context.WithTimeout(c.m.ctx, c.m.opts.RefreshTimeout)
		defer cancel()
		if _, err := c.refresh(ctx, reasonProactive, "", nil); err != nil {
			if errors.Is(err, ErrLockBusy) {
				// Another instance is refreshing; its token arrives by
				// notification. Requests meanwhile must not each try
				// the lease again: hold the flag for a while.
				select {
				case <-time.After(busyRetry):
				case <-c.m.ctx.Done():
				}
				return
			}
			c.m.logger.Debug("proactive refresh failed; the current token stays in use until it expires",
				c.m.logFields(c, "error", err.Error())...)
		}
	}()
}

// busyRetry is how long a proactive refresh that found another
// instance refreshing waits before another attempt may start.
const busyRetry = time.Second

// Status is a redacted view of a credential for operators.
type Status struct {
	ID         string    `json:"id"`
	Resource   string    `json:"resource"`
	Principal  string    `json:"principal,omitempty"`
	Issuer     string    `json:"issuer,omitempty"`
	Grant      string    `json:"grant"`
	Scopes     []string  `json:"scopes,omitempty"`
	Expiry     time.Time `json:"expiry,omitzero"`
	Generation uint64    `json:"generation"`
	State      State     `json:"state"`
	LastError  string    `json:"last_error,omitempty"`
}

// Status returns the credential's redacted status.
func (c *Credential) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{ID: c.id, Resource: c.spec.Resource, Principal: c.principal, Grant: c.spec.Grant, State: c.stateLocked(), Scopes: c.spec.Scopes}
	if c.health != nil {
		s.LastError = c.health.lastErr
	}
	if c.rec != nil {
		// The scopes the current token was granted (as the server said,
		// else as requested), also when they came from discovery.
		s.Issuer, s.Scopes, s.Generation = c.rec.Issuer, c.rec.grantedScopes(), c.rec.Generation
	}
	if t := c.current.Load(); t != nil && !t.Expiry.IsZero() {
		s.Expiry = t.Expiry
	}
	return s
}
