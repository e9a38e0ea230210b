package caddymodule

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/oauthgw/caddy-oauth-gateway/gateway"
	"go.uber.org/zap"
)

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
	appVal, err := ctx.App("oauth_gateway")
	if err != nil {
		return fmt.Errorf("loading oauth_gateway app: %v", err)
	}
	app := appVal.(*App)
	cfg, err := h.expand()
	if err != nil {
		return err
	}
	h.warnLiteralSecrets(cfg.Resource)
	h.warnSubjectTokenLogged(ctx, cfg.Resource)
	opts := gateway.Options{
		Manager:           app.Manager(),
		Logger:            h.logger,
		ExchangeCacheSize: app.CacheSize,
		BeforeReplay:      withFreshVars,
	}
	if h.Principal != "" {
		opts.Principal = placeholderReader(h.Principal)
	}
	if h.SubjectToken != "" {
		opts.SubjectToken = placeholderReader(h.SubjectToken)
		opts.SubjectTokenHeader = requestHeaderOf(placeholderKey(h.SubjectToken))
	}
	h.gw, err = gateway.New(cfg, opts)
	return err
}

// expand replaces placeholders ({env.X}, {file./path}) in every field a
// user could reasonably write one in. A placeholder that expands to
// nothing is an error naming it: an unset variable must not become an
// empty client id sent to the authorization server.
func (h *Handler) expand() (gateway.Config, error) {
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
	x := gateway.Config{
		ClientAuth: h.ClientAuth, ClientKeyID: h.ClientKeyID, Grant: h.Grant,
		Scopes: h.Scopes, MaxScope: h.MaxScope, OmitResourceParameter: h.OmitResourceParameter,
		TokenWait: time.Duration(h.TokenWait), MaxReplayBody: h.MaxReplayBody, InsecureAllowHTTP: h.InsecureAllowHTTP,
		Timeout: time.Duration(h.Timeout), UpstreamErrors: h.UpstreamErrors, ErrorAliases: h.ErrorAliases,
		Principal: h.Principal, CredentialGroup: h.CredentialGroup, AuthorizationParams: h.AuthorizationParams,
		AuthorizationStateTTL: time.Duration(h.AuthorizationStateTTL), MaxPendingAuthorizations: h.MaxPendingAuthorizations,
		SubjectToken: h.SubjectToken, SubjectTokenType: h.SubjectTokenType, DPoP: h.DPoP,
		ExchangeRate: h.ExchangeRate, ExchangeBurst: h.ExchangeBurst,
		ExchangeClientRate: h.ExchangeRatePerClient, ExchangeClientBurst: h.ExchangeBurstPerClient,
	}
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
			return x, err
		}
	}
	if x.TrustedIssuers, err = many("trusted_issuers", h.TrustedIssuers); err != nil {
		return x, err
	}
	x.DiscoveryAllowHosts, err = many("discovery_allow_hosts", h.DiscoveryAllowHosts)
	return x, err
}

// warnLiteralSecrets: Caddy itself shows the configuration as written (its
// debug "adjusted config" line, GET /config/ on the admin endpoint), so a
// secret written literally is visible there whatever this module does.
func (h *Handler) warnLiteralSecrets(resource string) {
	for _, f := range []struct{ name, raw string }{
		{"client_secret", h.ClientSecret},
		{"refresh_token", h.RefreshToken},
		{"idp_client_secret", h.IDPClientSecret},
	} {
		if f.raw != "" && !strings.Contains(f.raw, "{") {
			h.logger.Warn("secret written literally in the configuration; Caddy's debug log and admin /config/ show it. Use a placeholder such as {env.NAME} or {file./path}",
				zap.String("subdirective", f.name), zap.String("resource", resource))
		}
	}
}

// Validate implements caddy.Validator. The gateway core validated the
// configuration when Provision built it (gateway.New), with every message
// naming the subdirective and, through Provision, this handler.
func (h *Handler) Validate() error { return nil }
