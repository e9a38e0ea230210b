package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

const (
	defaultMaxReplayBody = 1 << 20
	defaultTokenWait     = 5 * time.Second
)

// expandedConfig is the handler's configuration with placeholders
// replaced at provisioning.
type expandedConfig struct {
	Resource, TokenEndpoint, Issuer, RevocationEndpoint string
	ClientID, ClientSecret, RefreshToken                string
	RedirectURI, ClientMetadataURL, ClientKey, JWKSURI  string
	AssertionFile                                       string
	IDPTokenEndpoint, IDPClientID, IDPClientSecret      string
	TrustedIssuers, DiscoveryAllowHosts                 []string
}

// where names the handler in errors: its resource and, from a Caddyfile,
// the file and line.
func (h *Handler) where() string {
	w := "oauth_gateway"
	if h.Resource != "" {
		w += " for " + h.Resource
	}
	if h.Source != "" {
		w += " (" + h.Source + ")"
	}
	return w
}

// Provision expands placeholders and binds the handler to its credential
// in the app's token manager.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.provision(ctx); err != nil {
		return fmt.Errorf("%s: %w", h.where(), err)
	}
	return nil
}

func (h *Handler) provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.holdFn = h.hold
	if h.Grant == "" {
		h.Grant = tokenstore.GrantClientCredentials
		if h.RefreshToken != "" {
			h.Grant = tokenstore.GrantRefreshToken
		}
	}
	if h.MaxReplayBody == 0 {
		h.MaxReplayBody = defaultMaxReplayBody
	}
	if h.TokenWait == 0 {
		h.TokenWait = caddy.Duration(defaultTokenWait)
	}
	appVal, err := ctx.App("oauth_gateway")
	if err != nil {
		return fmt.Errorf("loading oauth_gateway app: %v", err)
	}
	app := appVal.(*App)
	if err := h.expand(); err != nil {
		return err
	}
	h.warnLiteralSecrets()
	auth, err := h.clientAuth()
	if err != nil {
		return err
	}
	x := &h.expanded

	spec := tokenstore.Spec{
		Resource:         x.Resource,
		ClientID:         x.ClientID,
		Grant:            h.Grant,
		Issuer:           x.Issuer,
		TokenEndpoint:    x.TokenEndpoint,
		Scopes:           h.Scopes,
		SeedRefreshToken: x.RefreshToken,
	}
	res := h.newResolver()
	h.resolver = res
	client := &oauthclient.Client{
		Aliases:   h.ErrorAliases,
		Timeout:   time.Duration(h.Timeout),
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
		sendResource:  !h.OmitResourceParameter,
		// A refresh token obtained by a user's consent came from the
		// pinned server itself; only a configured secret or seed is a
		// secret another server could steal.
		trust:  newIssuerTrust(x.Resource, x.TrustedIssuers, x.ClientSecret != "" || carriesSecret(h.Grant)),
		logger: h.logger,
		dpop:   h.DPoP,
	}
	h.manager = app.Manager()
	req.credentialID = spec.ID()
	h.credentialID = req.credentialID
	if h.DPoP {
		client.DPoPNonces = &oauthclient.DPoPNonces{}
		h.dpop = newUpstreamDPoP(x.Resource)
	}
	if isExchange(h.Grant) {
		return h.provisionExchange(app, req, client)
	}
	if h.Grant == tokenstore.GrantAuthorizationCode {
		req.registration = &clientRegistration{configured: x.ClientID != "", cimdURL: x.ClientMetadataURL, jwks: x.JWKSURI != "",
			redirectURI: x.RedirectURI, manager: h.manager, logger: h.logger}
		flow, err := newAuthFlow(h, req, h.manager, spec)
		if err != nil {
			return err
		}
		h.flow = flow
		if h.Principal != "" {
			// Per-user: credentials are created per principal as
			// requests arrive; there is no shared one.
			return nil
		}
	}
	h.cred = h.manager.Credential(spec, req)
	if h.flow != nil {
		sharedFlows.Store(h.cred.ID(), h.flow)
	}
	h.logger.Debug("credential bound", zap.String("credential", h.cred.ID()),
		zap.String("resource", x.Resource), zap.String("grant", h.Grant))
	return nil
}

// expand replaces placeholders ({env.X}, {file./path}) in every field a
// user could reasonably write one in. A placeholder that expands to
// nothing is an error naming it: an unset variable must not become an
// empty client id sent to the authorization server.
func (h *Handler) expand() error {
	repl := caddy.NewReplacer()
	one := func(name, raw string) (string, error) {
		if raw == "" {
			return "", nil
		}
		v := repl.ReplaceKnown(raw, "")
		if strings.TrimSpace(v) == "" {
			return "", fmt.Errorf("%s: %s expanded to nothing (is the environment variable or file set?)", name, raw)
		}
		if strings.Contains(v, "{") && strings.Contains(raw, "{") && v == raw {
			return "", fmt.Errorf("%s: placeholder %s is not known when the configuration loads (use {env.NAME} or {file./path})", name, raw)
		}
		return v, nil
	}
	many := func(name string, raws []string) ([]string, error) {
		out := make([]string, 0, len(raws))
		for _, r := range raws {
			v, err := one(name, r)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	x := &h.expanded
	var err error
	for _, f := range []struct {
		name string
		raw  string
		dst  *string
	}{
		{"resource", h.Resource, &x.Resource},
		{"token_endpoint", h.TokenEndpoint, &x.TokenEndpoint},
		{"issuer", h.Issuer, &x.Issuer},
		{"revocation_endpoint", h.RevocationEndpoint, &x.RevocationEndpoint},
		{"client_id", h.ClientID, &x.ClientID},
		{"client_secret", h.ClientSecret, &x.ClientSecret},
		{"refresh_token", h.RefreshToken, &x.RefreshToken},
		{"redirect_uri", h.RedirectURI, &x.RedirectURI},
		{"client_metadata_url", h.ClientMetadataURL, &x.ClientMetadataURL},
		{"client_key", h.ClientKey, &x.ClientKey},
		{"jwks_uri", h.JWKSURI, &x.JWKSURI},
		{"assertion_file", h.AssertionFile, &x.AssertionFile},
		{"idp_token_endpoint", h.IDPTokenEndpoint, &x.IDPTokenEndpoint},
		{"idp_client_id", h.IDPClientID, &x.IDPClientID},
		{"idp_client_secret", h.IDPClientSecret, &x.IDPClientSecret},
	} {
		if *f.dst, err = one(f.name, f.raw); err != nil {
			return err
		}
	}
	if x.TrustedIssuers, err = many("trusted_issuers", h.TrustedIssuers); err != nil {
		return err
	}
	x.DiscoveryAllowHosts, err = many("discovery_allow_hosts", h.DiscoveryAllowHosts)
	return err
}

// warnLiteralSecrets: Caddy itself shows the configuration as written (its
// debug "adjusted config" line, GET /config/ on the admin endpoint), so a
// secret written literally is visible there whatever this module does.
func (h *Handler) warnLiteralSecrets() {
	for _, f := range []struct{ name, raw string }{
		{"client_secret", h.ClientSecret},
		{"refresh_token", h.RefreshToken},
		{"idp_client_secret", h.IDPClientSecret},
	} {
		if f.raw != "" && !strings.Contains(f.raw, "{") {
			h.logger.Warn("secret written literally in the configuration; Caddy's debug log and admin /config/ show it. Use a placeholder such as {env.NAME} or {file./path}",
				zap.String("subdirective", f.name), zap.String("resource", h.expanded.Resource))
		}
	}
}

// newResolver builds the endpoint resolver: static when token_endpoint is
// configured, discovery otherwise. Discovery may reach private addresses
// only at the resource's and the configured issuer's own host and port,
// and at discovery_allow_hosts.
func (h *Handler) newResolver() *resolver {
	x := &h.expanded
	r := &resolver{resource: x.Resource, issuer: x.Issuer, revocation: x.RevocationEndpoint, logger: h.logger,
		legacyMCP: h.Grant == tokenstore.GrantAuthorizationCode}
	allowHosts := make([]string, 0, len(x.DiscoveryAllowHosts)+2)
	for _, host := range x.DiscoveryAllowHosts {
		allowHosts = append(allowHosts, strings.ToLower(host))
	}
	for _, raw := range []string{x.Resource, x.Issuer} {
		if hp, err := discovery.HostPortOf(raw); err == nil && raw != "" {
			allowHosts = append(allowHosts, hp)
		}
	}
	r.client = discovery.NewClient(discovery.Options{
		AllowHTTP:  h.InsecureAllowHTTP,
		AllowHosts: allowHosts,
		OnFetch:    func(outcome string) { gatewayMetrics.discoveryFetches.WithLabelValues(outcome).Inc() },
	})
	if x.TokenEndpoint != "" {
		r.static = &endpoints{Issuer: x.Issuer, TokenEndpoint: x.TokenEndpoint, RevocationEndpoint: x.RevocationEndpoint}
	}
	return r
}

// clientAuth loads the signing key (when configured) and the JWKS that
// publishes it, and says what the configuration can authenticate with.
func (h *Handler) clientAuth() (clientAuth, error) {
	x := &h.expanded
	auth := clientAuth{configured: clientAuthMethods[h.ClientAuth], secret: x.ClientSecret != ""}
	if x.ClientKey != "" {
		key, err := oauthclient.LoadSigningKey(x.ClientKey, "", h.ClientKeyID)
		if err != nil {
			return auth, fmt.Errorf("client_key: %w", err)
		}
		auth.key = key
		if h.jwks, err = oauthclient.PublicJWKS(key); err != nil {
			return auth, fmt.Errorf("client_key: %w", err)
		}
	}
	if x.JWKSURI != "" {
		u, err := url.Parse(x.JWKSURI)
		if err != nil {
			return auth, fmt.Errorf("jwks_uri: %v", err)
		}
		h.jwksPath = u.Path
	}
	return auth, nil
}
