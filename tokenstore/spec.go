package tokenstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Grant types the gateway can hold a credential for.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
	// GrantAuthorizationCode credentials start from a user's consent
	// (authorization code + PKCE) and are then refreshed like
	// GrantRefreshToken ones.
	GrantAuthorizationCode = "authorization_code"
	// GrantJWTBearer credentials present a JWT from a file the workload's
	// platform rotates (RFC 7523 §2.1), read fresh for every token request.
	GrantJWTBearer = "jwt_bearer"
	// GrantTokenExchange and GrantIDJAG obtain a token per request subject
	// by exchanging the token the request carries (RFC 8693; enterprise-
	// managed authorization: an ID-JAG from the identity provider, then
	// the jwt-bearer grant). Their tokens live in an ExchangeCache, not in
	// credentials.
	GrantTokenExchange = "token_exchange"
	GrantIDJAG         = "id_jag"
)

// rotates reports whether the credential holds a refresh token that may
// rotate: it must never be presented twice, so it is refreshed only under
// the lock and with the store readable.
func (s *Spec) rotates() bool {
	return s.Grant == GrantRefreshToken || s.Grant == GrantAuthorizationCode
}

// Spec is a credential as configured: what it is for and how to obtain
// tokens. Two handlers with equal identity fields share one credential.
type Spec struct {
	Resource      string
	ClientID      string
	Grant         string
	Issuer        string // configured issuer, if any
	TokenEndpoint string // configured token endpoint, if any
	Scopes        []string
	// SeedRefreshToken is the configured refresh token (grant
	// refresh_token). It is used only while the store holds nothing newer
	// from the same seed.
	SeedRefreshToken string
	// Principal is the user a per-user credential belongs to ("" for a
	// shared credential). It is part of the identity: every user has a
	// credential of their own.
	Principal string
	// Front names the identity front a per-user credential's principal
	// comes from (the handler's principal expression and site, or a
	// group handlers share on purpose): alice signed in by one front is
	// not alice of another, so fronts never share a credential.
	Front string
}

// ID is the credential's stable identifier: a hash of what identifies it
// (never of secrets), safe to log and to use as a storage key.
func (s *Spec) ID() string {
	h := sha256.New()
	parts := []string{"v1", s.Resource, s.ClientID, s.Grant, s.Issuer, s.TokenEndpoint}
	if s.Principal != "" {
		parts = append(parts, "principal", s.Principal)
	}
	if s.Front != "" {
		parts = append(parts, "front", s.Front)
	}
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// seedHash fingerprints the seed refresh token, salted with the credential
// id so equal seeds of different credentials do not look alike.
func (s *Spec) seedHash() string {
	if s.SeedRefreshToken == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s.ID() + "\x00" + s.SeedRefreshToken))
	return hex.EncodeToString(sum[:])
}

// TokenRequest is one request to the token endpoint.
type TokenRequest struct {
	Grant        string
	RefreshToken string // for GrantRefreshToken
	Scopes       []string
	// PinnedIssuer is the issuer the credential is bound to ("" before the
	// first token). A Requester must not send the credential's secrets to
	// a token endpoint of another issuer.
	// StepUp is set when Scopes widen the credential's scope for an
	// upstream's insufficient_scope (a refresh otherwise asks for no
	// scope unless one is configured).
	StepUp       bool
	PinnedIssuer string
	// Key is the credential's DPoP key (RFC 9449; opaque here), "" before
	// its first DPoP token: a Requester that binds tokens makes one then
	// and returns it in TokenResult.Key.
	Key string
}

// TokenResult is a successful token response.
type TokenResult struct {
	AccessToken  string
	TokenType    string
	RefreshToken string // "" when the server did not rotate it
	// Scopes granted, nil when the response did not say (then the
	// requested scopes were granted, RFC 6749 §5.1).
	Scopes    []string
	ExpiresIn time.Duration // 0 when the response had no expires_in
	// Issuer and TokenEndpoint say where the token came from, for pinning.
	Issuer        string
	TokenEndpoint string
	// Key is the DPoP key the request was made with ("": none); it is
	// stored with the credential, so bound tokens survive restarts.
	Key string
}

// Requester obtains tokens from an authorization server. Errors should
// implement ClassifiedError so the store knows whether the credential
// survives them; other errors count as transient.
type Requester interface {
	RequestToken(ctx context.Context, req TokenRequest) (*TokenResult, error)
}

// ClassifiedError is implemented by token endpoint errors that know what
// they mean for the credential.
type ClassifiedError interface {
	error
	// Permanent reports that the grant itself was rejected
	// (invalid_grant, invalid_client): retrying cannot help.
	Permanent() bool
	// Transient reports a server-side or network failure: retry with
	// backoff and keep the credential.
	Transient() bool
}

// Token is an access token ready to inject.
type Token struct {
	AccessToken string
	// Key is the DPoP key (RFC 9449) the token is bound to, as decoded by
	// Options.DecodeKey: every use needs a proof signed with it. nil for
	// a Bearer token.
	Key        any
	Expiry     time.Time // zero when unknown
	Scopes     []string
	Generation uint64

	// header is the Authorization header value, built once per token so
	// the hot path does not concatenate strings.
	header string

	// refreshAt is when a request should trigger a background refresh;
	// usableUntil is when requests must wait for a new token. Both are
	// Unix nanoseconds (derived from the stored wall-clock expiry, so
	// nothing monotonic is lost), 8 bytes each instead of a time.Time's 24:
	// a token is held per credential, and per-user deployments hold many.
	refreshAt   int64
	usableUntil int64
	// obtainedAt (Unix nanoseconds) and reactive say when and why this
	// process obtained the token: a reactive token rejected again soon is
	// not refreshed again.
	obtainedAt int64
	reactive   bool
	// accepted is set once an upstream answered a request carrying the
	// token with anything but a rejection (MarkAccepted): a later
	// rejection of such a token is a revocation, refreshed at once.
	accepted atomic.Bool
}

// Accepted reports whether an upstream accepted the token (MarkAccepted).
func (t *Token) Accepted() bool { return t.accepted.Load() }

// MarkAccepted records that an upstream accepted the token. It is called
// on the hot path: one atomic load once the mark is set.
func (t *Token) MarkAccepted() {
	if !t.accepted.Load() {
		t.accepted.Store(true)
	}
}

// bearerPrefix is the Authorization scheme of unbound tokens.
const bearerPrefix = "Bearer "

// HeaderValue is the Authorization header value to send upstream: Bearer
// (RFC 6750), or DPoP for a token the server issued as DPoP-bound
// (token_type DPoP, matched case-insensitively) to the credential's key.
func (t *Token) HeaderValue() string { return t.header }

// HasScopes reports whether the token was granted every scope in want.
func (t *Token) HasScopes(want []string) bool {
	for _, s := range want {
		if !slices.Contains(t.Scopes, s) {
			return false
		}
	}
	return true
}

// timeForever stands in for "no known expiry" in records written before
// AssumedLifetime existed (they carry no IssuedAt): such tokens are
// replaced only when an upstream rejects them.
const timeForever = math.MaxInt64

// AssumedLifetime is the lifetime given to a token whose response had no
// (or a non-positive) expires_in: it is refreshed ahead of that point like
// any other, so a token the server silently expires is not used forever.
const AssumedLifetime = time.Hour

// newToken computes the refresh windows. The skew is capped at a fifth of
// the lifetime so a 3-second token is refreshed after 2.4 s rather than on
// every request, and requests keep using it (while one background refresh
// runs) until just before it expires.
func newToken(r *Record, skew time.Duration) *Token {
	t, _ := newBoundToken(r, skew, nil)
	return t
}

// newBoundToken is newToken for a record that may hold a DPoP-bound
// token: decode parses the record's key (nil: tokens are presented as
// Bearer tokens).
func newBoundToken(r *Record, skew time.Duration, decode func([]byte) (any, error)) (*Token, error) {
	var key any
	if decode != nil && r.DPoPKey != "" && strings.EqualFold(r.TokenType, "DPoP") {
		k, err := decode([]byte(r.DPoPKey))
		if err != nil {
			return nil, fmt.Errorf("tokenstore: the credential's DPoP key cannot be read: %w", err)
		}
		key = k
	}
	prefix := bearerPrefix
	if key != nil {
		prefix = "DPoP "
	}
	header := prefix + r.AccessToken
	t := &Token{
		// The access token is the tail of the header, so the two share
		// one string instead of holding the token twice.
		AccessToken: header[len(prefix):],
		Key:         key,
		Expiry:      r.Expiry,
		Scopes:      r.grantedScopes(),
		Generation:  r.Generation,
		header:      header,
	}
	expiry := r.Expiry
	if expiry.IsZero() {
		if r.IssuedAt.IsZero() {
			t.refreshAt, t.usableUntil = timeForever, timeForever
			return t, nil
		}
		expiry = r.IssuedAt.Add(AssumedLifetime)
	}
	lifetime := expiry.Sub(r.IssuedAt)
	if lifetime < 0 {
		lifetime = 0
	}
	t.refreshAt = expiry.Add(-min(skew, lifetime/5)).UnixNano()
	t.usableUntil = expiry.Add(-min(2*time.Second, lifetime/20)).UnixNano()
	return t, nil
}

// UnionScopes returns a ∪ b in first-seen order, without empty entries.
func UnionScopes(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, s := range append(append([]string(nil), a...), b...) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
