package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// clientRegistration says which OAuth client an authorization-code
// credential uses, in the MCP order: the configured client_id; else a
// Client ID Metadata Document when client_metadata_url is set and the
// server supports it; else RFC 7591 registration, once per (issuer,
// redirect_uri) for the whole fleet, persisted and reused; else an error.
type clientRegistration struct {
	configured  bool
	cimdURL     string
	jwks        bool // the client metadata document names a jwks_uri
	redirectURI string
	manager     *tokenstore.Manager
	logger      *zap.Logger
}

// clientFor returns the client credentials to use with ep's server.
func (r *requester) clientFor(ctx context.Context, ep *endpoints) (oauthclient.Credentials, error) {
	cr := r.registration
	if cr == nil || cr.configured {
		return r.credsFor(ep)
	}
	if cr.cimdURL != "" && ep.CIMD {
		creds := oauthclient.Credentials{ClientID: cr.cimdURL, AuthMethod: oauthclient.AuthNone}
		if r.creds.Key != nil && cr.jwks {
			creds.AuthMethod, creds.Key, creds.Audience = oauthclient.AuthPrivateKeyJWT, r.creds.Key, ep.Issuer
		}
		return creds, nil
	}
	if ep.RegistrationEndpoint == "" {
		return oauthclient.Credentials{}, &flowError{
			public: "no client_id is configured, and the authorization server supports neither client metadata documents nor dynamic registration",
			err: fmt.Errorf("authorization server %s: no client_id configured, no client_id_metadata_document_supported (or no client_metadata_url), no registration_endpoint",
				ep.Issuer)}
	}
	reg, err := cr.manager.Registered(ctx, ep.Issuer, cr.redirectURI, "", func(ctx context.Context) (*tokenstore.Registration, error) {
		return r.register(ctx, ep)
	})
	if err != nil {
		return oauthclient.Credentials{}, fmt.Errorf("registering with %s: %w", ep.Issuer, err)
	}
	return registeredCreds(reg), nil
}

func registeredCreds(reg *tokenstore.Registration) oauthclient.Credentials {
	method := reg.TokenEndpointAuthMethod
	switch {
	case reg.ClientSecret == "":
		method = oauthclient.AuthNone
	case method != oauthclient.AuthPost:
		method = oauthclient.AuthBasic
	}
	return oauthclient.Credentials{ClientID: reg.ClientID, ClientSecret: reg.ClientSecret, AuthMethod: method}
}

// register performs RFC 7591 registration at ep's registration endpoint.
func (r *requester) register(ctx context.Context, ep *endpoints) (*tokenstore.Registration, error) {
	method := oauthclient.AuthNone
	if slices.Contains(ep.AuthMethods, oauthclient.AuthBasic) {
		method = oauthclient.AuthBasic
	}
	rc, err := r.client.Register(ctx, ep.RegistrationEndpoint, oauthclient.ClientMetadata{
		ClientName:              "Caddy OAuth gateway",
		RedirectURIs:            []string{r.registration.redirectURI},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: method,
		ApplicationType:         oauthclient.ApplicationTypeFor([]string{r.registration.redirectURI}),
	}, "")
	if err != nil {
		return nil, err
	}
	reg := &tokenstore.Registration{ClientID: rc.ClientID, ClientSecret: rc.ClientSecret, TokenEndpointAuthMethod: rc.TokenEndpointAuthMethod}
	if reg.TokenEndpointAuthMethod == "" {
		reg.TokenEndpointAuthMethod = method
	}
	if rc.ClientSecretExpiresAt > 0 {
		reg.ExpiresAt = time.Unix(rc.ClientSecretExpiresAt, 0)
	}
	return reg, nil
}

// exchange redeems an authorization code (RFC 6749 §4.1.3 with PKCE) at
// the pinned issuer's token endpoint.
func (r *requester) exchange(ctx context.Context, p *tokenstore.PendingAuthorization, code string) (*tokenstore.TokenResult, error) {
	if code == "" {
		return nil, &flowError{public: "the response carries no authorization code", err: errors.New("authorization response without code")}
	}
	ep, err := r.endpointsFor(ctx, p.Issuer)
	if err != nil {
		return nil, err
	}
	creds, err := r.clientFor(ctx, ep)
	if err != nil {
		return nil, err
	}
	if creds.ClientID != p.ClientID {
		return nil, &flowError{public: "the gateway's client registration changed during the authorization; start again",
			err: fmt.Errorf("client %s started the flow, %s would finish it", p.ClientID, creds.ClientID)}
	}
	req := oauthclient.Request{
		TokenEndpoint: ep.TokenEndpoint,
		Grant:         oauthclient.GrantAuthorizationCode,
		Code:          code,
		RedirectURI:   p.RedirectURI,
		CodeVerifier:  p.CodeVerifier,
	}
	if r.sendResource {
		req.Resource = r.resourceFor(ep)
	}
	// A new consent, a new key: the refresh token it yields may be bound
	// to it (RFC 9449 §5).
	return r.send(ctx, ep, creds, req, "")
}

// reregisterIfRejected replaces a dynamically registered client the
// server no longer accepts (invalid_client): the next flow uses a new
// registration (fleet-wide, under the lock). Credentials issued to the old
// client go back to their users' consent.
func (r *requester) reregisterIfRejected(ctx context.Context, ep *endpoints, creds oauthclient.Credentials, err error) {
	cr := r.registration
	var oe *oauthclient.Error
	if cr == nil || cr.configured || creds.ClientID == cr.cimdURL || !errors.As(err, &oe) || oe.Err == nil || oe.Err.Code != "invalid_client" {
		return
	}
	cr.logger.Warn("the authorization server rejected the gateway's registered client; registering again", zap.String("issuer", ep.Issuer))
	if _, rerr := cr.manager.Registered(ctx, ep.Issuer, cr.redirectURI, creds.ClientID, func(ctx context.Context) (*tokenstore.Registration, error) {
		return r.register(ctx, ep)
	}); rerr != nil {
		cr.logger.Error("registering again failed", zap.String("issuer", ep.Issuer), zap.Error(rerr))
	}
}
