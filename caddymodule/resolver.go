package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
	"github.com/oauthgw/caddy-oauth-gateway/discovery"
)

// endpoints are where a credential's tokens come from.
type endpoints struct {
	Issuer             string
	TokenEndpoint      string
	RevocationEndpoint string
	AuthMethods        []string
	ScopesSupported    []string
}

// resolver finds a handler's endpoints: the configured token endpoint, or
// RFC 8414 / OIDC metadata of the configured issuer, or RFC 9728 protected
// resource metadata of the resource and then its authorization server's
// metadata. Results are cached; a challenge that brings a different
// resource_metadata URL makes the next lookup revalidate.
type resolver struct {
	static   *endpoints // configured token endpoint: no discovery
	client   *discovery.Client
	resource string
	issuer   string // configured issuer, if any
	logger   *zap.Logger

	flight singleflight.Group
	mu     sync.Mutex
	cached *endpoints
	expiry time.Time
	// challengeURLs and challengeScope come from the latest upstream
	// challenge.
	challengeURLs  []string
	challengeScope string
	stale          bool
}

// resolveTTL bounds how long resolved endpoints are reused before the
// (separately cached) metadata is consulted again.
const resolveTTL = time.Hour

func (r *resolver) resolve(ctx context.Context) (*endpoints, error) {
	if r.static != nil {
		return r.static, nil
	}
	r.mu.Lock()
	if r.cached != nil && !r.stale && time.Now().Before(r.expiry) {
		ep := r.cached
		r.mu.Unlock()
		return ep, nil
	}
	r.mu.Unlock()
	v, err, _ := r.flight.Do("resolve", func() (any, error) {
		ep, err := r.discover(ctx)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.cached, r.expiry, r.stale = ep, time.Now().Add(resolveTTL), false
		r.mu.Unlock()
		return ep, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*endpoints), nil
}

func (r *resolver) discover(ctx context.Context) (*endpoints, error) {
	issuer := r.issuer
	var scopes []string
	if issuer == "" {
		r.mu.Lock()
		urls := slices.Clone(r.challengeURLs)
		r.mu.Unlock()
		prm, from, err := r.client.ProtectedResource(ctx, r.resource, urls)
		if err != nil {
			return nil, discoveryFailure(err)
		}
		if len(prm.AuthorizationServers) == 0 {
			return nil, &untrustedError{msg: fmt.Sprintf("protected resource metadata at %s names no authorization server", from)}
		}
		issuer = prm.AuthorizationServers[0]
		scopes = prm.ScopesSupported
		r.logger.Debug("discovered protected resource metadata", zap.String("url", from), zap.String("authorization_server", issuer))
	}
	as, err := r.client.AuthServer(ctx, issuer)
	if err != nil {
		return nil, discoveryFailure(err)
	}
	if !r.client.AllowHTTP && !strings.HasPrefix(as.TokenEndpoint, "https://") {
		return nil, &untrustedError{msg: fmt.Sprintf("authorization server %s advertises a non-https token endpoint", issuer)}
	}
	if len(scopes) == 0 {
		scopes = as.ScopesSupported
	}
	r.logger.Debug("discovered authorization server metadata", zap.String("issuer", issuer), zap.String("token_endpoint", as.TokenEndpoint))
	return &endpoints{
		Issuer:             issuer,
		TokenEndpoint:      as.TokenEndpoint,
		RevocationEndpoint: as.RevocationEndpoint,
		AuthMethods:        as.AuthMethods(),
		ScopesSupported:    scopes,
	}, nil
}

// noteChallenge records an upstream's challenge: a resource_metadata URL
// not seen before means the metadata may have changed (RFC 9728 §5), so
// the next lookup refetches and revalidates it.
func (r *resolver) noteChallenge(h http.Header) (changed bool) {
	if r.static != nil {
		return false
	}
	chs := challenge.Parse(h.Values("WWW-Authenticate"))
	urls := discovery.ResourceMetadataURLs(chs)
	scope := discovery.ChallengeScope(chs)
	r.mu.Lock()
	defer r.mu.Unlock()
	if scope != "" {
		r.challengeScope = scope
	}
	if len(urls) > 0 && !slices.Equal(urls, r.challengeURLs) {
		r.challengeURLs = urls
		r.stale = true
		for _, u := range urls {
			r.client.Invalidate(u)
		}
		return true
	}
	return false
}

// scopesFromChallenge is the challenged scope, if any (MCP: used when no
// scope is configured).
func (r *resolver) scopesFromChallenge() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Fields(r.challengeScope)
}

// untrustedError is a discovery result the gateway refuses to act on: a
// mismatched document, a blocked destination, a changed authorization
// server. Retrying will not help until the configuration changes.
type untrustedError struct {
	msg string
	err error
}

func (e *untrustedError) Error() string   { return e.msg }
func (e *untrustedError) Unwrap() error   { return e.err }
func (e *untrustedError) Permanent() bool { return false }
func (e *untrustedError) Transient() bool { return false }

// discoveryFailure classifies a discovery error: validation failures and
// blocked destinations are untrusted; "nothing found" waits for new
// information (a challenge) rather than being retried at once; anything
// else (network) is transient.
func discoveryFailure(err error) error {
	var ve *discovery.ValidationError
	if errors.As(err, &ve) || errors.Is(err, discovery.ErrBlockedDestination) {
		return &untrustedError{msg: err.Error(), err: err}
	}
	if errors.Is(err, discovery.ErrNotFound) {
		return &notFoundError{err: err}
	}
	return fmt.Errorf("discovering the authorization server: %w", err)
}

// notFoundError: no metadata at any candidate URL. Retrying the same URLs
// at once cannot help; an upstream challenge may name new ones.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string {
	return "discovering the authorization server: " + e.err.Error()
}
func (e *notFoundError) Unwrap() error   { return e.err }
func (e *notFoundError) Permanent() bool { return false }
func (e *notFoundError) Transient() bool { return false }
