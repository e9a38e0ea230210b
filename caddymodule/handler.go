package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the oauth_gateway HTTP handler. It holds an OAuth credential
// for an upstream resource, injects a valid bearer token into every request
// it passes on (replacing any Authorization header the client sent),
// refreshes ahead of expiry, and when the upstream still answers 401 it
// refreshes once and replays the request, body included.
//
// Only 401 and 403 responses are buffered; everything else, including
// server-sent event streams, passes through as it comes.
type Handler struct {
	// Resource is the protected resource's URL. It identifies the
	// credential and is sent as the RFC 8707 `resource` parameter,
	// exactly as written. Required.
	Resource string `json:"resource,omitempty"`

	// TokenEndpoint is the authorization server's token endpoint.
	// Required (until discovery is configured).
	TokenEndpoint string `json:"token_endpoint,omitempty"`

	// RevocationEndpoint is the RFC 7009 revocation endpoint used by the
	// admin API's revoke (default: the one advertised in discovered
	// authorization server metadata, if any).
	RevocationEndpoint string `json:"revocation_endpoint,omitempty"`

	// ClientID is the OAuth client identifier. Required.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret authenticates the client. Placeholders such as
	// {env.CLIENT_SECRET} are expanded at provisioning; the value is never
	// logged.
	ClientSecret string `json:"client_secret,omitempty"`

	// ClientAuth is how the client authenticates at the token endpoint:
	// "basic" (HTTP Basic with form-encoded id and secret, RFC 6749
	// §2.3.1; the default) or "post" (in the request body).
	ClientAuth string `json:"client_auth,omitempty"`

	// Grant is "client_credentials" (default) or "refresh_token".
	Grant string `json:"grant,omitempty"`

	// RefreshToken is the seed for grant refresh_token. It is used only
	// while the store holds nothing newer obtained from this same seed;
	// changing it replaces the stored credential. Placeholders are expanded.
	RefreshToken string `json:"refresh_token,omitempty"`

	// Scopes are requested with every token.
	Scopes []string `json:"scopes,omitempty"`

	// MaxReplayBody is the largest request body (in bytes) buffered so the
	// request can be replayed after a 401 (default 1 MiB). Larger bodies,
	// and bodies of unknown length, stream through and a 401 for them
	// reaches the client.
	MaxReplayBody int64 `json:"max_replay_body,omitempty"`

	// InsecureAllowHTTP permits http:// token endpoint and metadata URLs.
	// For development and tests only: it sends credentials in clear text.
	InsecureAllowHTTP bool `json:"insecure_allow_http,omitempty"`

	// Timeout bounds each token endpoint request (default 15s).
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// UpstreamErrors names presets for upstreams that signal token
	// failures in non-standard ways. "slack": an HTTP 200 JSON body with
	// `"ok":false` and `token_expired`, `invalid_auth` or `not_authed` is
	// treated as a 401 (refresh and replay), `missing_scope` as 403
	// insufficient_scope. Only small JSON 200 responses are held back to
	// check, and only when a preset is set; everything else streams.
	UpstreamErrors []string `json:"upstream_errors,omitempty"`

	// ErrorAliases maps vendor error codes from the token endpoint to
	// standard RFC 6749 codes, over the built-in table (which already maps
	// invalid_refresh_token, expired_refresh_token, bad_refresh_token and
	// others to invalid_grant).
	ErrorAliases map[string]string `json:"error_aliases,omitempty"`

	cred   *tokenstore.Credential
	logger *zap.Logger
	// noteChallenge tells discovery about an upstream challenge (a new
	// resource_metadata URL means metadata must be revalidated).
	noteChallenge func(http.Header)
	// holdFn is h.hold, bound once so requests do not allocate a closure.
	holdFn func(int, http.Header) bool
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

const defaultMaxReplayBody = 1 << 20

// Provision expands placeholders in secrets and binds the handler to its
// credential in the app's token manager.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.noteChallenge = func(http.Header) {}
	h.holdFn = h.hold
	if h.Grant == "" {
		h.Grant = tokenstore.GrantClientCredentials
	}
	if h.ClientAuth == "" {
		h.ClientAuth = "basic"
	}
	if h.MaxReplayBody == 0 {
		h.MaxReplayBody = defaultMaxReplayBody
	}
	appVal, err := ctx.App("oauth_gateway")
	if err != nil {
		return fmt.Errorf("loading oauth_gateway app: %v", err)
	}
	app := appVal.(*App)

	repl := caddy.NewReplacer()
	secret := repl.ReplaceKnown(h.ClientSecret, "")
	seed := repl.ReplaceKnown(h.RefreshToken, "")
	if h.Grant == tokenstore.GrantRefreshToken && h.RefreshToken != "" && seed == "" {
		return fmt.Errorf("refresh_token: expands to an empty value")
	}

	spec := tokenstore.Spec{
		Resource:         h.Resource,
		ClientID:         h.ClientID,
		Grant:            h.Grant,
		TokenEndpoint:    h.TokenEndpoint,
		Scopes:           h.Scopes,
		SeedRefreshToken: seed,
	}
	req := &requester{
		client: &oauthclient.Client{
			Aliases:   h.ErrorAliases,
			Timeout:   time.Duration(h.Timeout),
			UserAgent: "caddy-oauth-gateway",
		},
		creds: oauthclient.Credentials{
			ClientID:     h.ClientID,
			ClientSecret: secret,
			AuthMethod:   authMethod(h.ClientAuth),
		},
		tokenEndpoint:      h.TokenEndpoint,
		resource:           h.Resource,
		revocationEndpoint: h.RevocationEndpoint,
	}
	h.cred = app.Manager().Credential(spec, req)
	h.logger.Debug("credential bound", zap.String("credential", h.cred.ID()),
		zap.String("resource", h.Resource), zap.String("grant", h.Grant))
	return nil
}

// upstreamPresets are the accepted upstream_errors values.
var upstreamPresets = []string{"slack"}

// checkAliases accepts only aliases onto standard codes.
func checkAliases(aliases map[string]string) error {
	for vendor, std := range aliases {
		if !slices.Contains(standardTokenErrors, std) {
			return fmt.Errorf("error_alias: %s -> %q: target must be a standard code (%s)", vendor, std, strings.Join(standardTokenErrors, ", "))
		}
	}
	return nil
}

// standardTokenErrors are RFC 6749 §5.2 codes plus RFC 8707 invalid_target.
var standardTokenErrors = []string{"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
	"unsupported_grant_type", "invalid_scope", "invalid_target"}

func authMethod(s string) string {
	if s == "post" {
		return oauthclient.AuthPost
	}
	return oauthclient.AuthBasic
}

// Validate checks the configuration; each message names the subdirective.
func (h *Handler) Validate() error {
	if h.Resource == "" {
		return fmt.Errorf("resource: required")
	}
	if err := checkURL("resource", h.Resource, h.InsecureAllowHTTP); err != nil {
		return err
	}
	if h.TokenEndpoint == "" {
		return fmt.Errorf("token_endpoint: required")
	}
	if err := checkURL("token_endpoint", h.TokenEndpoint, h.InsecureAllowHTTP); err != nil {
		return err
	}
	if h.RevocationEndpoint != "" {
		if err := checkURL("revocation_endpoint", h.RevocationEndpoint, h.InsecureAllowHTTP); err != nil {
			return err
		}
	}
	if h.ClientID == "" {
		return fmt.Errorf("client_id: required")
	}
	switch h.Grant {
	case tokenstore.GrantClientCredentials:
	case tokenstore.GrantRefreshToken:
		if h.RefreshToken == "" {
			return fmt.Errorf("refresh_token: required for grant refresh_token")
		}
	default:
		return fmt.Errorf("grant: unknown grant %q (want client_credentials or refresh_token)", h.Grant)
	}
	switch h.ClientAuth {
	case "basic", "post":
	default:
		return fmt.Errorf("client_auth: unknown method %q (want basic or post)", h.ClientAuth)
	}
	for _, p := range h.UpstreamErrors {
		if !slices.Contains(upstreamPresets, p) {
			return fmt.Errorf("upstream_errors: unknown preset %q (want one of %s)", p, strings.Join(upstreamPresets, ", "))
		}
	}
	if err := checkAliases(h.ErrorAliases); err != nil {
		return err
	}
	if h.MaxReplayBody < 0 {
		return fmt.Errorf("max_replay_body: must not be negative")
	}
	for _, s := range h.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			return fmt.Errorf("scope: invalid scope token %q", s)
		}
	}
	return nil
}

// checkURL requires an absolute https URL (http only when allowed)
// without userinfo or fragment.
func checkURL(name, raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%s: must be an absolute URL, got %q", name, raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP {
			return fmt.Errorf("%s: %q uses http; use https or set insecure_allow_http (development only)", name, raw)
		}
	default:
		return fmt.Errorf("%s: scheme %q is not http(s)", name, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%s: must not contain userinfo", name)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%s: must not contain a fragment", name)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
