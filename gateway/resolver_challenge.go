package gateway

// What the resolver learns from the upstream itself: its 401 challenges
// (RFC 9728 §5: a resource_metadata URL, MCP: a scope), a probe for them
// before a first consent, and the resource's scopes_supported.

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
	"github.com/oauthgw/caddy-oauth-gateway/discovery"
)

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
	if scope != "" && len(scope) <= maxChallengeScope {
		r.challengeScope = scope
	}
	if len(urls) > 0 && !slices.Equal(urls, r.challengeURLs) {
		now := time.Now()
		if !r.lastRediscovery.IsZero() && now.Sub(r.lastRediscovery) < rediscoveryInterval {
			// Endpoints that work are not dropped for an upstream that
			// changes its story faster than this.
			gatewayMetrics.discoveryFetches.WithLabelValues("rate_limited").Inc()
			return false
		}
		r.lastRediscovery = now
		r.challengeURLs = urls
		r.stale = true
		for _, u := range urls {
			r.client.Invalidate(u)
		}
		return true
	}
	return false
}

// maxChallengeScope bounds a challenge's scope string kept for MCP scope
// selection.
const maxChallengeScope = 4 << 10

// resourceScopes is the protected resource metadata's scopes_supported:
// from discovery when it ran, else (token_endpoint or issuer configured)
// read from the resource's metadata on first use and kept for
// resolveTTL. A resource without metadata has none.
func (r *resolver) resourceScopes(ctx context.Context) []string {
	r.mu.Lock()
	if r.cached != nil && r.cached.ResourceScopes != nil {
		defer r.mu.Unlock()
		return r.cached.ResourceScopes
	}
	if time.Now().Before(r.resourceScopesExpiry) {
		defer r.mu.Unlock()
		return r.resourceScopesRead
	}
	urls := slices.Clone(r.challengeURLs)
	r.mu.Unlock()
	v, _, _ := r.flight.Do("resource-scopes", func() (any, error) {
		var scopes []string
		if prm, _, err := r.client.ProtectedResource(ctx, r.resource, urls); err == nil {
			scopes = prm.ScopesSupported
		} else {
			r.logger.Debug("no protected resource metadata for the step-up bound", zap.String("resource", r.resource), zap.Error(err))
		}
		r.mu.Lock()
		r.resourceScopesRead, r.resourceScopesExpiry = scopes, time.Now().Add(resolveTTL)
		r.mu.Unlock()
		return scopes, nil
	})
	scopes, _ := v.([]string)
	return scopes
}

// scopesFromChallenge is the challenged scope, if any (MCP: used when no
// scope is configured).
func (r *resolver) scopesFromChallenge() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Fields(r.challengeScope)
}

// probeTimeout bounds the request that asks the upstream for its
// challenge before a first consent.
const probeTimeout = 10 * time.Second

// probeChallenge learns the upstream's challenge before a first consent,
// the way a direct MCP client's first request does: a resource_metadata
// URL or a scope that appears only in the 401 challenge. The request is
// the gateway's own and cannot act: a JSON-RPC `initialize` without a
// token, POSTed to the resource, whose body is not read beyond a bound.
// At most one probe per rediscoveryInterval; nothing configured
// (token_endpoint, issuer) needs one.
func (r *resolver) probeChallenge(ctx context.Context) {
	if r.static != nil || r.issuer != "" {
		return
	}
	r.mu.Lock()
	if len(r.challengeURLs) > 0 || r.challengeScope != "" || time.Since(r.lastProbe) < rediscoveryInterval {
		r.mu.Unlock()
		return
	}
	r.lastProbe = time.Now()
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	const initialize = `{"jsonrpc":"2.0","id":"oauth-gateway-probe","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"caddy-oauth-gateway","version":"probe"}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.resource, strings.NewReader(initialize))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	client := &http.Client{Transport: r.client.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		r.logger.Debug("probing the upstream for its challenge failed", zap.String("resource", r.resource), zap.Error(err))
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		r.noteChallenge(resp.Header)
		r.logger.Debug("learned the upstream's challenge before consent", zap.String("resource", r.resource))
	}
}

// revalidate makes the next lookup fetch the resource's metadata again,
// at most once per rediscoveryInterval: a token the upstream accepted and
// now rejects was revoked, or the resource moved to another authorization
// server (MCP SEP-2352), which only fresh metadata tells. Nothing
// configured (token_endpoint, issuer) is revalidated.
func (r *resolver) revalidate() bool {
	if r.static != nil || r.issuer != "" {
		return false
	}
	r.mu.Lock()
	now := time.Now()
	if !r.lastRevalidation.IsZero() && now.Sub(r.lastRevalidation) < rediscoveryInterval {
		r.mu.Unlock()
		return false
	}
	r.lastRevalidation, r.stale = now, true
	r.mu.Unlock()
	r.client.InvalidateAll()
	return true
}
