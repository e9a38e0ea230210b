// Package gateway is the OAuth gateway's request path as net/http
// middleware, free of any web server framework: it picks the credential
// for a request (per user when configured), injects its token (Bearer or
// DPoP), holds back the upstream's 401 and 403 answers, refreshes and
// replays, steps up, serves the authorization flow's own endpoints, and
// answers clients with the documented errors. Tokens live in a
// tokenstore.Manager; OAuth mechanics are oauthclient's, metadata
// discovery is discovery's.
//
// The Caddy module (package caddymodule) is one embedding: it maps the
// Caddyfile and JSON onto Config, placeholders onto Options, and calls
// Serve with Caddy's next handler. Any other server wraps an http.Handler
// with Handler.
//
// Decisions are taken in one place each: which scopes to ask for
// (scope.go), which server may receive a secret (trust.go), and when a
// rejected token is refreshed (refresh.go). Flows ask them; none
// re-decides.
package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Options connect a Gateway to the server that embeds it.
type Options struct {
	// Manager holds the credentials. Required.
	Manager *tokenstore.Manager
	// Logger receives the gateway's log lines (default: none).
	Logger *zap.Logger
	// Principal evaluates Config.Principal for a request: the user it is
	// made for ("" when the request names none, which is refused). Required
	// when Config.Principal is set.
	Principal func(*http.Request) string
	// SubjectToken reads Config.SubjectToken from a request. Required for
	// grants token_exchange and id_jag.
	SubjectToken func(*http.Request) string
	// SubjectTokenHeader is the request header the subject token comes
	// in, if any: it is removed before the request goes upstream.
	SubjectTokenHeader string
	// ExchangeCacheSize bounds the exchanged tokens held in memory.
	ExchangeCacheSize int
	// BeforeReplay prepares a request for a replay while the first
	// attempt's transport may still be reading it (Caddy: a copy of the
	// request variables). Default: the request as it is.
	BeforeReplay func(*http.Request) *http.Request
}

// Next is the handler a Gateway passes requests on to; Caddy's next
// handler is one as it is, and Handler adapts an http.Handler.
type Next interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

// Gateway is one configured gateway in front of one upstream resource.
// Its Config is read-only once New returns.
type Gateway struct {
	Config
	opts Options

	// resolver finds endpoints; serve reads the resource's
	// scopes_supported from it to bound step-up.
	resolver *resolver
	// scopes decides every scope the gateway asks for (scope.go).
	scopes scopePolicy
	// flow is the authorization-code machinery (nil for other grants).
	flow *authFlow
	// jwks is the published key set, served at jwksPath.
	jwks     []byte
	jwksPath string

	cred *tokenstore.Credential
	// exchange holds the tokens of grants token_exchange and id_jag, per
	// request subject (nil for other grants).
	exchange *tokenstore.ExchangeCache
	// credentialID names the gateway's credential (or exchange cache) in
	// errors and logs.
	credentialID string
	// dpop signs proofs for DPoP-bound tokens (nil without DPoP).
	dpop    *upstreamDPoP
	manager *tokenstore.Manager
	logger  *zap.Logger
	// holdFn is g.hold, bound once so requests do not allocate a closure.
	holdFn func(int, http.Header) bool
}

// New validates cfg and binds a Gateway to its credential in
// opts.Manager. Close releases it.
func New(cfg Config, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Manager == nil {
		return nil, errors.New("gateway: Options.Manager is required")
	}
	if cfg.Principal != "" && opts.Principal == nil {
		return nil, errors.New("principal: no way to evaluate it for a request (Options.Principal is nil)")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	g := &Gateway{Config: cfg, opts: opts, manager: opts.Manager, logger: opts.Logger}
	g.holdFn = g.hold
	if err := g.build(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Gateway) build() error {
	auth, err := g.clientAuth()
	if err != nil {
		return err
	}
	x := &g.Config
	spec := tokenstore.Spec{
		Resource:         x.Resource,
		ClientID:         x.ClientID,
		Grant:            g.Grant,
		Issuer:           x.Issuer,
		TokenEndpoint:    x.TokenEndpoint,
		Scopes:           g.Scopes,
		SeedRefreshToken: x.RefreshToken,
	}
	res := g.newResolver()
	g.resolver = res
	g.scopes = scopePolicy{configured: g.Scopes, max: g.MaxScope, resolver: res, consentBound: g.Grant == tokenstore.GrantAuthorizationCode}
	client := &oauthclient.Client{
		Aliases:   g.ErrorAliases,
		Timeout:   g.Timeout,
		UserAgent: "caddy-oauth-gateway",
	}
	if res.static == nil {
		// Discovered token endpoints get the same address guard as
		// discovery, and never a redirect.
		client.HTTPClient = &http.Client{
			Transport:     res.client.Transport(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	req := &requester{
		client:   client,
		resolver: res,
		creds: oauthclient.Credentials{
			ClientID:     x.ClientID,
			ClientSecret: x.ClientSecret,
			Key:          auth.key,
		},
		auth:          auth,
		assertionFile: x.AssertionFile,
		resource:      x.Resource,
		sendResource:  !g.OmitResourceParameter,
		// A refresh token obtained by a user's consent came from the
		// pinned server itself; only a configured secret or seed is a
		// secret another server could steal.
		trust: trustPolicy{issuerTrust: newIssuerTrust(x.Resource, x.TrustedIssuers, x.ClientSecret != "" || carriesSecret(g.Grant)),
			logger: g.logger, credentialID: spec.ID(), resource: x.Resource},
		logger: g.logger,
		dpop:   g.DPoP,
		scopes: g.scopes,
	}
	req.credentialID = spec.ID()
	g.credentialID = req.credentialID
	if g.DPoP {
		client.DPoPNonces = &oauthclient.DPoPNonces{}
		g.dpop = newUpstreamDPoP(x.Resource)
	}
	if isExchange(g.Grant) {
		return g.provisionExchange(req, client)
	}
	if g.Grant == tokenstore.GrantAuthorizationCode {
		spec.Front = g.identityFront()
		req.registration = &clientRegistration{configured: x.ClientID != "", cimdURL: x.ClientMetadataURL, jwks: x.JWKSURI != "",
			redirectURI: x.RedirectURI, manager: g.manager, logger: g.logger}
		flow, err := newAuthFlow(g, req, g.manager, spec, g.opts.Principal)
		if err != nil {
			return err
		}
		g.flow = flow
		if g.Principal != "" {
			// Per-user: credentials are created per principal as
			// requests arrive; there is no shared one.
			return nil
		}
	}
	g.cred = g.manager.Credential(spec, req)
	if g.flow != nil {
		sharedFlows.Store(g.cred.ID(), g.flow)
	}
	g.logger.Debug("credential bound", zap.String("credential", g.cred.ID()),
		zap.String("resource", x.Resource), zap.String("grant", g.Grant))
	return nil
}

// identityFront names where a per-user credential's principal comes
// from: the credential group when configured, else the principal
// expression at the redirect_uri's origin (the site). "" for a shared
// credential, which has no principal.
func (g *Gateway) identityFront() string {
	if g.Principal == "" {
		return ""
	}
	if g.CredentialGroup != "" {
		return "group:" + g.CredentialGroup
	}
	origin := g.RedirectURI
	if u, err := url.Parse(g.RedirectURI); err == nil {
		origin = strings.ToLower(u.Scheme + "://" + u.Host)
	}
	return g.Principal + "@" + origin
}

// Close releases the gateway's use of its credentials; credentials no
// gateway uses any more are collected after a grace period.
func (g *Gateway) Close() {
	if g.cred != nil {
		g.manager.Release(g.cred)
	}
	if g.flow != nil {
		g.flow.release()
	}
}

// CredentialID names the gateway's credential (shared, or the per-user
// family) as the admin API and logs show it.
func (g *Gateway) CredentialID() string { return g.credentialID }

// Handler wraps next as plain net/http middleware: every request goes
// through Serve, and an error Serve returns becomes its status (an
// HTTPError's, else 500) with the status text as body.
func (g *Gateway) Handler(next http.Handler) http.Handler {
	n := handlerNext{next}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Serve(w, r, n); err != nil {
			status := http.StatusInternalServerError
			var he *HTTPError
			if errors.As(err, &he) {
				status = he.Status
			}
			g.logger.Debug("request failed", zap.Int("status", status), zap.Error(err))
			http.Error(w, http.StatusText(status), status)
		}
	})
}

// handlerNext adapts an http.Handler to Next.
type handlerNext struct{ h http.Handler }

func (n handlerNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.h.ServeHTTP(w, r)
	return nil
}

// HTTPError is a request failure before anything was written, with the
// status it should be answered with.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d: %v", e.Status, e.Err) }
func (e *HTTPError) Unwrap() error { return e.Err }

// beforeReplay prepares r for another attempt (Options.BeforeReplay).
func (g *Gateway) beforeReplay(r *http.Request) *http.Request {
	if g.opts.BeforeReplay == nil {
		return r
	}
	return g.opts.BeforeReplay(r)
}
