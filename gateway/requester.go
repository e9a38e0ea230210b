package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// requester implements tokenstore.Requester and tokenstore.Revoker with
// the OAuth client, the resolver (configured or discovered endpoints) and
// the handler's client credentials.
//
// Every outbound call that carries a secret or a token goes through one
// gate, endpointsFor: the issuer pin and the trust rule for discovered
// issuers are checked there and nowhere else.
type requester struct {
	client   *oauthclient.Client
	creds    oauthclient.Credentials
	resolver *resolver
	resource string
	// sendResource is false with `resource_parameter off` (Entra v2).
	sendResource bool
	// auth chooses the client authentication method (configured, or
	// from the server's metadata among those the configuration can use).
	auth  clientAuth
	trust trustPolicy
	// assertionFile is the jwt_bearer grant's assertion, read per request.
	assertionFile string
	// registration chooses the client of an authorization-code
	// credential (nil for other grants).
	registration *clientRegistration
	logger       *zap.Logger
	// credentialID names the handler's credential in log lines.
	credentialID string
	// dpop: token requests carry a DPoP proof with the credential's key.
	dpop bool
	// scopes decides the scope of every token request.
	scopes scopePolicy

	// For grants token_exchange and id_jag: the grant, the scopes asked
	// for, the subject token's type URN, and for id_jag the identity
	// provider (its own client: no discovery, no address guard beyond
	// what the configuration names).
	grant            string
	exchangeScopes   []string
	subjectTokenType string
	idp              struct {
		tokenEndpoint string
		creds         oauthclient.Credentials
	}
	idpClient *oauthclient.Client
}

// endpointsFor resolves where tokens come from and asks the trust policy
// whether this credential may send its secrets there (pinned: the issuer
// the credential is bound to, "" before the first token).
func (r *requester) endpointsFor(ctx context.Context, pinned string) (*endpoints, error) {
	ep, err := r.resolver.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.trust.allow(pinned, ep); err != nil {
		return nil, err
	}
	return ep, nil
}

// Revoke implements tokenstore.Revoker (RFC 7009) at the pinned issuer's
// revocation endpoint, or the configured one.
func (r *requester) Revoke(ctx context.Context, pinned, token, hint string) error {
	ep, err := r.endpointsFor(ctx, pinned)
	var ue *untrustedError
	if errors.As(err, &ue) && ue.kind == untrustedPin {
		// The upstream names another server now; the tokens were issued
		// by the pinned one, so revoke them there.
		ep, err = r.resolver.pinnedEndpoints(ctx, pinned)
	}
	if err != nil {
		return err
	}
	endpoint := r.resolver.revocation
	if endpoint == "" {
		endpoint = ep.RevocationEndpoint
	}
	if endpoint == "" {
		// token_endpoint configured: the issuer's metadata may still
		// advertise one.
		if endpoint, err = r.resolver.advertisedRevocation(ctx); err != nil {
			return fmt.Errorf("%w (reading the issuer's metadata: %v)", tokenstore.ErrNoRevocationEndpoint, err)
		}
	}
	if endpoint == "" {
		return tokenstore.ErrNoRevocationEndpoint
	}
	creds, err := r.clientFor(ctx, ep)
	if err != nil {
		return err
	}
	return r.client.Revoke(ctx, creds, endpoint, token, hint)
}

// resourceFor is the RFC 8707 resource parameter for ep's server: the
// protected resource metadata's `resource` when discovery read one (RFC
// 9728 §3: the configured URL may be a longer form of it, within the
// resource), else the configured resource.
func (r *requester) resourceFor(ep *endpoints) string {
	if ep != nil && ep.Resource != "" {
		return ep.Resource
	}
	return r.resource
}

// RequestToken implements tokenstore.Requester.
func (r *requester) RequestToken(ctx context.Context, tr tokenstore.TokenRequest) (*tokenstore.TokenResult, error) {
	ep, err := r.endpointsFor(ctx, tr.PinnedIssuer)
	if err != nil {
		return nil, err
	}
	req := oauthclient.Request{
		TokenEndpoint: ep.TokenEndpoint,
		Grant:         tr.Grant,
		RefreshToken:  tr.RefreshToken,
		Scopes:        r.scopes.tokenRequest(tr, ep),
	}
	if tr.Grant == tokenstore.GrantJWTBearer {
		if req.Assertion, err = readAssertion(r.assertionFile, time.Now()); err != nil {
			r.logger.Error("no usable assertion for the jwt_bearer grant", zap.String("credential", r.credentialID), zap.Error(err))
			return nil, err
		}
		req.Grant = oauthclient.GrantJWTBearer
	}
	if r.sendResource {
		req.Resource = r.resourceFor(ep)
	}
	creds, err := r.clientFor(ctx, ep)
	if err != nil {
		return nil, err
	}
	return r.send(ctx, ep, creds, req, tr.Key)
}

// send makes the token request req at ep's server, with a DPoP proof of
// the stored key (or a new one) when dpop is on, and returns the result
// with the key to store.
func (r *requester) send(ctx context.Context, ep *endpoints, creds oauthclient.Credentials, req oauthclient.Request, storedKey string) (*tokenstore.TokenResult, error) {
	var encKey string
	if r.dpop {
		var err error
		if req.DPoP, encKey, err = r.dpopKeyFor(storedKey); err != nil {
			return nil, err
		}
	}
	resp, err := r.client.Token(ctx, creds, req)
	if err != nil {
		r.reregisterIfRejected(ctx, ep, creds, err)
		return nil, r.explain(err)
	}
	return r.withKey(tokenResult(resp, ep), encKey, resp.TokenType), nil
}

// withKey records the DPoP key a token was requested with, so it is
// stored with the credential.
func (r *requester) withKey(res *tokenstore.TokenResult, encKey string, tokenType string) *tokenstore.TokenResult {
	if r.dpop {
		res.Key = encKey
		r.noteUnbound(tokenType)
	}
	return res
}

// tokenResult converts a token response for the store.
func tokenResult(resp *normalize.TokenResponse, ep *endpoints) *tokenstore.TokenResult {
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
	return res
}

// credsFor is the client authentication for ep's server. Assertions
// (private_key_jwt, client_secret_jwt) name the issuer as audience.
func (r *requester) credsFor(ep *endpoints) (oauthclient.Credentials, error) {
	creds := r.creds
	method, err := r.auth.choose(ep.AuthMethods)
	if err != nil {
		r.logger.Error("no client authentication method fits", zap.String("credential", r.credentialID),
			zap.String("issuer", ep.Issuer), zap.Error(err))
		return creds, err
	}
	creds.AuthMethod, creds.Audience = method, ep.Issuer
	return creds, nil
}

// explain adds the fix to token endpoint errors whose cause is known: an
// authorization server that refuses the RFC 8707 resource parameter
// (Microsoft Entra ID v2 answers AADSTS901002 invalid_request).
func (r *requester) explain(err error) error {
	var oe *oauthclient.Error
	if !r.sendResource || !errors.As(err, &oe) || oe.Err == nil {
		return err
	}
	code, desc := oe.Err.Code, strings.ToLower(oe.Err.Description)
	if (code == "invalid_request" || code == "invalid_target") && (strings.Contains(desc, "resource") || strings.Contains(desc, "aadsts901002")) {
		hint := "the authorization server refused the RFC 8707 resource parameter; set `resource_parameter off` (Microsoft Entra ID v2 needs it)"
		r.logger.Error("token request refused because of the resource parameter", zap.String("credential", r.credentialID),
			zap.String("error", code), zap.String("fix", "resource_parameter off"))
		return &hintedError{err: err, hint: hint}
	}
	return err
}

// hintedError is a token endpoint error with the configuration change
// that fixes it; the hint is safe to show clients.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintedError) Unwrap() error { return e.err }
