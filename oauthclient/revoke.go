package oauthclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
	"github.com/oauthgw/caddy-oauth-gateway/redact"
)

// Revoke asks the revocation endpoint to revoke token (RFC 7009 §2.1),
// authenticating the client as for token requests. hint is
// "refresh_token" or "access_token". A 200 means done, including for a
// token the server did not know (§2.2).
func (c *Client) Revoke(ctx context.Context, creds Credentials, endpoint, token, hint string) error {
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	r, assertion, err := c.newRequest(ctx, endpoint, creds, form)
	if err != nil {
		return err
	}
	status, header, body, err := c.do(r)
	if err != nil {
		return err
	}
	if status == http.StatusOK {
		return nil
	}
	_, oerr := normalize.TokenEndpoint(status, header, body, c.Aliases)
	if oerr == nil {
		oerr = &normalize.Error{Code: "server_error", Status: status, Description: "unexpected revocation response", Class: normalize.Transient}
	}
	scrubError(oerr, creds, token, assertion)
	return &Error{Endpoint: redact.URL(endpoint), Err: oerr}
}
