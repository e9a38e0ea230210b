package tokenstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// ErrNoSubjectToken is returned for a request of an exchange grant
// (token_exchange, id_jag) that carries no subject token.
var ErrNoSubjectToken = errors.New("tokenstore: the request carries no subject token")

// ErrSubjectRejected is wrapped by errors for a subject token the
// authorization server (or the identity provider) refused: the request's
// own token is at fault, not the gateway's configuration.
var ErrSubjectRejected = errors.New("tokenstore: the subject token was refused")

// Subject is who a request of an exchange grant speaks for.
type Subject struct {
	// Key groups requests by subject: the configured principal, else the
	// subject token's `sub` claim, else a hash of the (opaque) token.
	Key string
	// Token is the subject token the request carries.
	Token string
	// Expiry is the subject token's own expiry, zero when unknown: an
	// exchanged token is not used past it.
	Expiry time.Time
	// Client names who sent the request, for ExchangeOptions.Admit (the
	// cache itself ignores it).
	Client string
}

// ExchangeFunc exchanges a subject token for an access token (RFC 8693,
// or ID-JAG then jwt-bearer). key is the DPoP key the last token of this
// subject was bound to ("": the function makes one if it binds tokens).
type ExchangeFunc func(ctx context.Context, subjectToken, key string) (*TokenResult, error)

// ExchangeOptions configure an ExchangeCache.
type ExchangeOptions struct {
	// Size bounds the subjects whose token is kept (default 10,000).
	Size int
	// RefreshSkew: a token this close to expiry is exchanged again.
	RefreshSkew time.Duration
	// RejectedFor is how long a refused subject token is answered
	// without asking again (default 30 s); TransientFor likewise for a
	// failing server (default 2 s).
	RejectedFor, TransientFor time.Duration
	// ConfigRetry is how long a configuration fault stops every exchange
	// (default 60 s): one token request per minute, not one per request.
	ConfigRetry time.Duration
	// DecodeKey parses a DPoP key for tokens (nil: tokens are unbound).
	DecodeKey func([]byte) (any, error)
	// Admit, when set, is asked before each exchange that would reach the
	// server, by the request that starts it: not for a token or a failure
	// answered from memory, nor for requests that join an exchange under
	// way for the same subject token. An error refuses the exchange; it
	// is returned to the requests as is and not remembered.
	Admit func(Subject) error
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ExchangeCache keeps tokens obtained by exchanging requests' subject
// tokens, in memory only (they are derived from what each request
// brings, and a restart costs one exchange per active subject).
//
// A token is served only to a request presenting the very subject token
// it was obtained with (compared by SHA-256): the subject key may come
// from claims the gateway cannot verify, so a forged token naming
// someone else's `sub` must not find their access token. It is sent to
// the server instead, which refuses it.
type ExchangeCache struct {
	opts     ExchangeOptions
	exchange ExchangeFunc
	entries  *lru.Cache[string, *exchanged]
	flight   singleflight.Group

	mu          sync.Mutex
	configUntil time.Time
	configErr   error
}

// exchanged is one subject's state. It is replaced, never changed.
type exchanged struct {
	tok      *Token
	sum      [32]byte // SHA-256 of the subject token tok was obtained with
	notAfter int64    // Unix nanoseconds: min(usable, subject expiry)
	key      string   // the DPoP key tok is bound to

	failedSum   [32]byte // a subject token that failed, and until when
	failedUntil int64
	failure     error
}

// NewExchangeCache returns an empty cache that obtains tokens with fn.
func NewExchangeCache(opts ExchangeOptions, fn ExchangeFunc) *ExchangeCache {
	if opts.Size <= 0 {
		opts.Size = 10_000
	}
	if opts.RefreshSkew <= 0 {
		opts.RefreshSkew = 60 * time.Second
	}
	if opts.RejectedFor <= 0 {
		opts.RejectedFor = 30 * time.Second
	}
	if opts.TransientFor <= 0 {
		opts.TransientFor = 2 * time.Second
	}
	if opts.ConfigRetry <= 0 {
		opts.ConfigRetry = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	entries, _ := lru.New[string, *exchanged](opts.Size) // Size > 0: no error
	return &ExchangeCache{opts: opts, exchange: fn, entries: entries}
}

// Token returns s's token, exchanging s.Token when no usable token was
// obtained with it. failed names a token the upstream just rejected (""
// otherwise): it is not returned again. cached reports whether no
// exchange was needed.
func (x *ExchangeCache) Token(ctx context.Context, s Subject, failed string) (tok *Token, cached bool, err error) {
	if s.Token == "" {
		return nil, false, ErrNoSubjectToken
	}
	sum := sha256.Sum256([]byte(s.Token))
	now := x.opts.Now().UnixNano()
	e, _ := x.entries.Get(s.Key)
	if e != nil && e.tok != nil && e.sum == sum && now < e.notAfter && e.tok.AccessToken != failed {
		return e.tok, true, nil
	}
	if e != nil && e.failure != nil && e.failedSum == sum && now < e.failedUntil {
		return nil, false, e.failure
	}
	if err := x.configFault(); err != nil {
		return nil, false, err
	}
	ch := x.flight.DoChan(s.Key+"\x00"+string(sum[:]), func() (any, error) {
		return x.obtain(s, sum)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, false, r.Err
		}
		return r.Val.(*Token), false, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// obtain runs one exchange (shared by the requests waiting for it) and
// records its outcome.
func (x *ExchangeCache) obtain(s Subject, sum [32]byte) (*Token, error) {
	if x.opts.Admit != nil {
		if err := x.opts.Admit(s); err != nil {
			return nil, err
		}
	}
	prev, _ := x.entries.Peek(s.Key)
	var key string
	if prev != nil {
		key = prev.key
	}
	// The exchange is not tied to the first caller's context: the others
	// waiting for it must not fail because that one went away.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := x.exchange(ctx, s.Token, key)
	now := x.opts.Now()
	if err != nil {
		return nil, x.remember(s.Key, prev, sum, now, err)
	}
	if res == nil || res.AccessToken == "" {
		return nil, x.remember(s.Key, prev, sum, now, errors.New("tokenstore: exchange answered without an access token"))
	}
	rec := &Record{AccessToken: res.AccessToken, TokenType: res.TokenType, IssuedAt: now, DPoPKey: res.Key}
	if res.ExpiresIn > 0 {
		rec.Expiry = now.Add(res.ExpiresIn)
	}
	tok, err := newBoundToken(rec, x.opts.RefreshSkew, x.opts.DecodeKey)
	if err != nil {
		return nil, err
	}
	e := &exchanged{tok: tok, sum: sum, notAfter: tok.refreshAt, key: res.Key}
	if !s.Expiry.IsZero() {
		e.notAfter = min(e.notAfter, s.Expiry.UnixNano())
	}
	x.entries.Add(s.Key, e)
	return tok, nil
}

// remember records a failed exchange so the same subject token is not
// sent again at once, and a configuration fault so that no exchange is.
func (x *ExchangeCache) remember(key string, prev *exchanged, sum [32]byte, now time.Time, err error) error {
	var ce ClassifiedError
	hold := x.opts.TransientFor
	switch {
	case errors.As(err, &ce) && ce.Permanent():
		err = fmt.Errorf("%w: %w", ErrSubjectRejected, err)
		hold = x.opts.RejectedFor
	case !isTransient(err):
		x.mu.Lock()
		x.configUntil, x.configErr = now.Add(x.opts.ConfigRetry), err
		x.mu.Unlock()
		return err
	}
	next := &exchanged{failedSum: sum, failedUntil: now.Add(hold).UnixNano(), failure: err}
	if prev != nil {
		// Keep the token of another subject token of the same subject.
		next.tok, next.sum, next.notAfter, next.key = prev.tok, prev.sum, prev.notAfter, prev.key
	}
	x.entries.Add(key, next)
	return err
}

// configFault returns the configuration fault that stops exchanges, if
// it is recent.
func (x *ExchangeCache) configFault() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.configErr != nil && x.opts.Now().Before(x.configUntil) {
		return x.configErr
	}
	return nil
}

// Len is the number of subjects held.
func (x *ExchangeCache) Len() int { return x.entries.Len() }
