package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// requester implements tokenstore.Requester with the OAuth client and the
// handler's configured endpoint and client credentials.
type requester struct {
	client        *oauthclient.Client
	creds         oauthclient.Credentials
	tokenEndpoint string
	resource      string
	issuer        string
	// revocationEndpoint is configured or discovered; "" when unknown.
	revocationEndpoint string
}

// Revoke implements tokenstore.Revoker (RFC 7009).
func (r *requester) Revoke(ctx context.Context, token, hint string) error {
	if r.revocationEndpoint == "" {
		return errors.New("no revocation endpoint is configured or advertised for this credential")
	}
	return r.client.Revoke(ctx, r.creds, r.revocationEndpoint, token, hint)
}

// RequestToken implements tokenstore.Requester.
func (r *requester) RequestToken(ctx context.Context, tr tokenstore.TokenRequest) (*tokenstore.TokenResult, error) {
	resp, err := r.client.Token(ctx, r.creds, oauthclient.Request{
		TokenEndpoint: r.tokenEndpoint,
		Grant:         tr.Grant,
		RefreshToken:  tr.RefreshToken,
		Scopes:        tr.Scopes,
		Resource:      r.resource,
	})
	if err != nil {
		return nil, err
	}
	res := &tokenstore.TokenResult{
		AccessToken:   resp.AccessToken,
		TokenType:     resp.TokenType,
		RefreshToken:  resp.RefreshToken,
		Issuer:        r.issuer,
		TokenEndpoint: r.tokenEndpoint,
	}
	if resp.HasExpiresIn && resp.ExpiresIn > 0 {
		res.ExpiresIn = time.Duration(resp.ExpiresIn) * time.Second
	}
	if resp.Scope != "" {
		res.Scopes = splitFields(resp.Scope)
	}
	return res, nil
}
