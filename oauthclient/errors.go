package oauthclient

import (
	"fmt"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
)

// Error is an authorization server's answer that was not a token: an
// RFC 6749 §5.2 error after normalization, or a server failure.
type Error struct {
	Endpoint string
	Err      *normalize.Error
	// kind names the endpoint in messages ("" is the token endpoint).
	kind string
}

func (e *Error) Error() string {
	return fmt.Sprintf("oauthclient: %s %s: %v", endpointKind(e.kind), e.Endpoint, e.Err)
}

// endpointKind is the name of an endpoint in error messages.
func endpointKind(kind string) string {
	if kind == "" {
		return "token endpoint"
	}
	return kind
}

// Unwrap returns the normalized error.
func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether the grant or client was rejected for good.
func (e *Error) Permanent() bool { return e.Err.Class == normalize.Permanent }

// Transient reports a server-side failure worth retrying.
func (e *Error) Transient() bool { return e.Err.Class == normalize.Transient }

// RetryAfterDuration is the server's Retry-After, if any.
func (e *Error) RetryAfterDuration() time.Duration { return e.Err.RetryAfter }

// TransportError is a request that got no answer (network error, timeout,
// oversized body). It is always transient.
type TransportError struct {
	Endpoint string
	Err      error
	// kind names the endpoint in messages ("" is the token endpoint).
	kind string
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("oauthclient: %s %s: %v", endpointKind(e.kind), e.Endpoint, e.Err)
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// Permanent is false: nothing was judged.
func (e *TransportError) Permanent() bool { return false }

// Transient is true.
func (e *TransportError) Transient() bool { return true }
