package tokenstore

import "errors"

// ErrUnreadable is wrapped by errors for a stored record that exists but
// cannot be opened or decoded (a wrong or missing encryption_key, a
// tampered or corrupted record; with encryption_key set, also a record
// that is not sealed, or sealed for another key, kind or generation than
// the one it is stored under). Such a record is never overwritten: it
// holds the credential's issuer pin and perhaps its only refresh token, so
// the credential fails closed until an operator fixes the key or removes
// the record.
var ErrUnreadable = errors.New("tokenstore: stored credential cannot be read")

// ErrRevoked is wrapped by errors for a credential an operator revoked or
// forgot through the admin API, so clients are told that rather than that
// the authorization server rejected it.
var ErrRevoked = errors.New("tokenstore: credential revoked by an operator")

// ErrNoRevocationEndpoint is returned by Revoke when no RFC 7009 endpoint is
// configured or advertised. Nothing is changed.
var ErrNoRevocationEndpoint = errors.New("tokenstore: no revocation endpoint is configured or advertised for this credential")

// ErrRejectedAgain is returned by Invalidate when the upstream rejects a
// token the gateway obtained for that very reason moments ago: refreshing
// again would only drive the token endpoint in step with a misbehaving
// upstream, so the rejection is passed on instead.
var ErrRejectedAgain = errors.New("tokenstore: the upstream rejected a token obtained moments ago after a rejection; not refreshing again yet")

// ErrScopeLimit is returned by StepUp when the widened scope set would
// exceed MaxScopes.
var ErrScopeLimit = errors.New("tokenstore: too many scopes requested")

// ErrConfiguration is wrapped by errors that a configuration change must
// fix (the authorization server refused the grant type, the client or the
// scope): they are retried slowly, not as weather.
var ErrConfiguration = errors.New("tokenstore: the authorization server refused the request as configured")

// MaxScopes caps the scope set a credential requests, so an upstream's
// repeated insufficient_scope challenges cannot grow it without bound.
const MaxScopes = 32

// ErrNeedsAuthorization is returned for an authorization-code credential
// that holds no refresh token (never authorized, or forgotten): a user
// (or, for a shared credential, an operator) must consent first.
var ErrNeedsAuthorization = errors.New("tokenstore: the credential needs a user's authorization")
