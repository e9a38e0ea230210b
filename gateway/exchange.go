package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Grants token_exchange and id_jag: the token a request carries for its
// user (subject_token) is exchanged for an access token to the resource,
// kept per subject in the handler's tokenstore.ExchangeCache.

// tokenSource is what ServeHTTP needs of a credential: a stored
// credential (tokenstore.Credential) or one request's subject in an
// exchange cache (exchangeSource).
type tokenSource interface {
	ID() string
	AcquireWithin(ctx context.Context, wait time.Duration) (*tokenstore.Token, bool, error)
	Invalidate(ctx context.Context, failed string) (*tokenstore.Token, error)
	StepUp(ctx context.Context, want []string, failed string) (*tokenstore.Token, error)
	ResetBackoff()
}

// exchangeSource is one request's subject as a tokenSource.
type exchangeSource struct {
	g       *Gateway
	subject tokenstore.Subject
}

func (s *exchangeSource) ID() string { return s.g.credentialID }

func (s *exchangeSource) AcquireWithin(ctx context.Context, wait time.Duration) (*tokenstore.Token, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return s.g.exchange.Token(ctx, s.subject, "")
}

func (s *exchangeSource) Invalidate(ctx context.Context, failed string) (*tokenstore.Token, error) {
	tok, _, err := s.g.exchange.Token(ctx, s.subject, failed)
	return tok, err
}

// StepUp: an exchange is made for the configured scopes; a wider scope
// needs a configuration change.
func (s *exchangeSource) StepUp(context.Context, []string, string) (*tokenstore.Token, error) {
	return nil, tokenstore.ErrScopeNotGrantable
}

func (s *exchangeSource) ResetBackoff() {}

// subjectOf is the request's subject: its subject token, keyed by the
// principal when configured, else by the token's `sub` claim (a JWT),
// else by a hash of the token. The key only groups requests; the cache
// serves a token only for the very subject token it was obtained with.
// Its Client is who the request's exchanges count against
// (exchangeClient).
func (g *Gateway) subjectOf(r *http.Request) tokenstore.Subject {
	raw := g.opts.SubjectToken(r)
	if g.opts.SubjectTokenHeader != "" {
		// The subject token is the user's credential for the identity
		// provider or authorization server, not for the upstream: it is
		// not forwarded (nor logged by the proxy).
		r.Header.Del(g.opts.SubjectTokenHeader)
	}
	token := strings.TrimSpace(raw)
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		token = strings.TrimSpace(token[7:])
	}
	s := tokenstore.Subject{Token: token}
	if token == "" {
		return s
	}
	sub, exp, isJWT := oauthclient.SubjectOf(token)
	s.Expiry = exp
	principal := ""
	if g.opts.Principal != nil {
		principal = strings.TrimSpace(g.opts.Principal(r))
	}
	s.Client = exchangeClient(principal, r.RemoteAddr)
	switch {
	case g.opts.Principal != nil:
		s.Key = "principal:" + principal
	case isJWT && sub != "":
		s.Key = "sub:" + sub
	default:
		sum := sha256.Sum256([]byte(token))
		s.Key = "token:" + hex.EncodeToString(sum[:16])
	}
	return s
}

// exchangeToken implements tokenstore.ExchangeFunc for the handler's
// grant: RFC 8693 at the resource's authorization server, or for id_jag
// an ID-JAG from the identity provider presented with the jwt-bearer grant.
func (r *requester) exchangeToken(ctx context.Context, subjectToken, storedKey string) (*tokenstore.TokenResult, error) {
	ep, err := r.endpointsFor(ctx, "")
	if err != nil {
		return nil, err
	}
	req := oauthclient.Request{TokenEndpoint: ep.TokenEndpoint, Scopes: r.exchangeScopes}
	if r.sendResource {
		req.Resource = r.resourceFor(ep)
	}
	switch r.grant {
	case tokenstore.GrantIDJAG:
		idjag, err := r.idJAG(ctx, subjectToken, ep.Issuer, r.resourceFor(ep))
		if err != nil {
			return nil, err
		}
		req.Grant, req.Assertion = oauthclient.GrantJWTBearer, idjag
	default:
		req.Grant, req.SubjectToken, req.SubjectTokenType = oauthclient.GrantTokenExchange, subjectToken, r.subjectTokenType
	}
	creds, err := r.clientFor(ctx, ep)
	if err != nil {
		return nil, err
	}
	res, err := r.send(ctx, ep, creds, req, storedKey)
	return res, subjectFault(err)
}

// idJAG asks the identity provider for an Identity Assertion JWT
// Authorization Grant for the user of subjectToken, addressed to the
// resource's authorization server (audience) and the resource.
func (r *requester) idJAG(ctx context.Context, subjectToken, issuer, resource string) (string, error) {
	if issuer == "" {
		return "", &configError{msg: "the resource's authorization server has no issuer identifier to address the ID-JAG to",
			hint: "the ID-JAG needs the authorization server's issuer (set issuer)"}
	}
	req := oauthclient.Request{
		TokenEndpoint:      r.idp.tokenEndpoint,
		Grant:              oauthclient.GrantTokenExchange,
		SubjectToken:       subjectToken,
		SubjectTokenType:   r.subjectTokenType,
		RequestedTokenType: oauthclient.TokenTypeIDJAG,
		Audience:           issuer,
		Resource:           resource,
		Scopes:             r.exchangeScopes,
	}
	resp, err := r.idpClient.Token(ctx, r.idp.creds, req)
	if err != nil {
		r.logger.Warn("identity provider refused the ID-JAG exchange", zap.String("credential", r.credentialID), zap.String("reason", serverCode(err, "")))
		return "", subjectFault(err)
	}
	if resp.IssuedTokenType != "" && resp.IssuedTokenType != oauthclient.TokenTypeIDJAG {
		return "", &configError{msg: fmt.Sprintf("the identity provider issued %s, not an ID-JAG", resp.IssuedTokenType),
			hint: "the identity provider did not issue an ID-JAG (check idp_token_endpoint)"}
	}
	return resp.AccessToken, nil
}

// subjectFault sorts a refused exchange. The client's configuration is
// at fault for invalid_client, unauthorized_client and
// unsupported_grant_type: every exchange waits (one request a minute).
// Any other refusal may come from the request's own subject token, so it
// is that token's failure only (remembered for it): one client's bad
// token must not stop everyone's exchanges.
func subjectFault(err error) error {
	var oe *oauthclient.Error
	if !errors.As(err, &oe) || oe.Err == nil || oe.Transient() {
		return err
	}
	switch oe.Err.Code {
	case "invalid_client", "unauthorized_client", "unsupported_grant_type":
		return &configError{msg: err.Error(), hint: "the gateway's client was refused for this exchange (check client_id, client_secret, idp_client_id, idp_client_secret and grant)"}
	}
	return &subjectRefused{err: err}
}

// subjectRefused is a refusal of one subject token (a permanent failure
// of that token, not of the gateway's credential).
type subjectRefused struct{ err error }

func (e *subjectRefused) Error() string   { return e.err.Error() }
func (e *subjectRefused) Unwrap() error   { return e.err }
func (e *subjectRefused) Permanent() bool { return true }
func (e *subjectRefused) Transient() bool { return false }

// isExchange reports whether grant obtains tokens per request subject.
func isExchange(grant string) bool {
	return grant == tokenstore.GrantTokenExchange || grant == tokenstore.GrantIDJAG
}

// carriesSecret reports whether a grant's token requests carry a secret
// of the gateway's or a user's (a configured seed, a platform assertion,
// a user's subject token), so that only a trusted issuer may receive them.
func carriesSecret(grant string) bool {
	switch grant {
	case tokenstore.GrantRefreshToken, tokenstore.GrantJWTBearer, tokenstore.GrantTokenExchange, tokenstore.GrantIDJAG:
		return true
	}
	return false
}

// provisionExchange sets up grants token_exchange and id_jag: no stored
// credential, an exchange cache per handler.
func (g *Gateway) provisionExchange(req *requester, client *oauthclient.Client) error {
	x := &g.Config
	req.grant, req.exchangeScopes = g.Grant, g.Scopes
	if g.opts.SubjectToken == nil {
		return fmt.Errorf("subject_token: no way to read it from a request (Options.SubjectToken is nil)")
	}
	typ := g.SubjectTokenType
	if typ == "" {
		typ = "access_token"
		if g.Grant == tokenstore.GrantIDJAG {
			typ = "id_token"
		}
	}
	urn, err := oauthclient.SubjectTokenTypeURN(typ)
	if err != nil {
		return fmt.Errorf("subject_token_type: %w", err)
	}
	req.subjectTokenType = urn
	if g.Grant == tokenstore.GrantIDJAG {
		req.idp.tokenEndpoint = x.IDPTokenEndpoint
		req.idp.creds = oauthclient.Credentials{ClientID: x.IDPClientID, ClientSecret: x.IDPClientSecret, AuthMethod: oauthclient.AuthBasic}
		// The identity provider is named by the configuration, not
		// discovered: the plain client (no redirects) is the right one.
		req.idpClient = &oauthclient.Client{Aliases: client.Aliases, Timeout: client.Timeout, UserAgent: client.UserAgent}
	}
	limit := newExchangeLimiter(x, g.logger, g.credentialID)
	g.exchange = tokenstore.NewExchangeCache(tokenstore.ExchangeOptions{
		Size:      g.opts.ExchangeCacheSize,
		DecodeKey: DecodeDPoPKey,
		Admit:     limit.admit,
	}, req.exchangeToken)
	g.logger.Debug("token exchange configured", zap.String("credential", g.credentialID),
		zap.String("resource", x.Resource), zap.String("grant", g.Grant),
		zap.Float64("exchange_rate", x.ExchangeRate), zap.Int("exchange_burst", x.ExchangeBurst),
		zap.Float64("exchange_rate_per_client", x.ExchangeClientRate), zap.Int("exchange_burst_per_client", x.ExchangeClientBurst))
	return nil
}
