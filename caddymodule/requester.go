package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// requester implements tokenstore.Requester with the OAuth client, the
// resolver (configured or discovered endpoints) and the handler's client
// credentials. It enforces issuer pinning: a credential's secrets go only
// to the authorization server it is bound to.
type requester struct {
	client   *oauthclient.Client
	creds    oauthclient.Credentials
	resolver *resolver
	resource string
	// authConfigured is set when client_auth was given; otherwise the
	// method is chosen from the server's metadata.
	authConfigured bool
	// revocationEndpoint is configured; "" to use the discovered one.
	revocationEndpoint string
	logger             *zap.Logger
}

// pinMismatch is an authorization server other than the one a credential
// is bound to.
func pinMismatch(pinned, advertised string) error {
	return &untrustedError{msg: fmt.Sprintf("the upstream now names authorization server %s, but this credential is bound to %s; "+
		"the gateway will not send its credentials there until the configuration changes", advertised, pinned)}
}

// Revoke implements tokenstore.Revoker (RFC 7009).
func (r *requester) Revoke(ctx context.Context, token, hint string) error {
	endpoint := r.revocationEndpoint
	if endpoint == "" {
		if ep, err := r.resolver.resolve(ctx); err == nil {
			endpoint = ep.RevocationEndpoint
		}
	}
	if endpoint == "" {
		return errors.New("no revocation endpoint is configured or advertised for this credential")
	}
	return r.client.Revoke(ctx, r.creds, endpoint, token, hint)
}

// RequestToken implements tokenstore.Requester.
func (r *requester) RequestToken(ctx context.Context, tr tokenstore.TokenRequest) (*tokenstore.TokenResult, error) {
	ep, err := r.resolver.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if tr.PinnedIssuer != "" && ep.Issuer != "" && !discovery.IssuerMatches(tr.PinnedIssuer, ep.Issuer) {
		r.logger.Warn("upstream points at a different authorization server; not sending credentials there",
			zap.String("pinned_issuer", tr.PinnedIssuer), zap.String("advertised_issuer", ep.Issuer), zap.String("resource", r.resource))
		return nil, pinMismatch(tr.PinnedIssuer, ep.Issuer)
	}
	creds := r.creds
	if !r.authConfigured {
		creds.AuthMethod = chooseAuthMethod(ep.AuthMethods)
	}
	scopes := tr.Scopes
	if len(scopes) == 0 {
		// MCP: the challenge's scope, else scopes_supported, else none.
		if scopes = r.resolver.scopesFromChallenge(); len(scopes) == 0 {
			scopes = ep.ScopesSupported
		}
	}
	resp, err := r.client.Token(ctx, creds, oauthclient.Request{
		TokenEndpoint: ep.TokenEndpoint,
		Grant:         tr.Grant,
		RefreshToken:  tr.RefreshToken,
		Scopes:        scopes,
		Resource:      r.resource,
	})
	if err != nil {
		return nil, err
	}
	res := &tokenstore.TokenResult{
		AccessToken:   resp.AccessToken,
		TokenType:     resp.TokenType,
		RefreshToken:  resp.RefreshToken,
		Issuer:        ep.Issuer,
		TokenEndpoint: ep.TokenEndpoint,
	}
	if resp.HasExpiresIn && resp.ExpiresIn > 0 {
		res.ExpiresIn = time.Duration(resp.ExpiresIn) * time.Second
	}
	if resp.Scope != "" {
		res.Scopes = strings.Fields(resp.Scope)
	}
	return res, nil
}

// chooseAuthMethod picks a client authentication method the server
// supports: client_secret_basic (the RFC 8414 default) when offered, else
// client_secret_post.
func chooseAuthMethod(supported []string) string {
	if slices.Contains(supported, oauthclient.AuthBasic) || !slices.Contains(supported, oauthclient.AuthPost) {
		return oauthclient.AuthBasic
	}
	return oauthclient.AuthPost
}
