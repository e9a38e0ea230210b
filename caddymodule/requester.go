package caddymodule

import (
	"context"
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
