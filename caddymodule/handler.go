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

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
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

	// TokenEndpoint is the authorization server's token endpoint. When
	// empty, it is discovered: from Issuer's metadata (RFC 8414, then
	// OpenID Connect discovery), or, without Issuer, from the resource's
	// protected resource metadata (RFC 9728: a challenge's
	// resource_metadata URL, then the path-inserted, then the root
	// well-known URL) and its authorization server's metadata.
	TokenEndpoint string `json:"token_endpoint,omitempty"`

	// Issuer is the authorization server's issuer identifier. Setting it
	// skips protected resource metadata and pins the credential to this
	// server. Without it, the credential is pinned to the first issuer
	// discovered, and the binding is stored with the credential: if the
	// upstream later names another server, no secret is sent there.
	Issuer string `json:"issuer,omitempty"`

	// DiscoveryAllowHosts are host names discovery may reach even when
	// they resolve to private, loopback or link-local addresses (RFC 9728
	// §7.7). Hosts of a configured resource or issuer that are themselves
	// such addresses are allowed without listing them.
	DiscoveryAllowHosts []string `json:"discovery_allow_hosts,omitempty"`

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
	// §2.3.1) or "post" (in the request body). Default: chosen from the
	// server's token_endpoint_auth_methods_supported when discovered
	// (basic when offered), else basic.
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

	cred    *tokenstore.Credential
	manager *tokenstore.Manager
	logger  *zap.Logger
	// noteChallenge tells discovery about an upstream challenge (a new
	// resource_metadata URL means metadata must be revalidated).
	noteChallenge func(http.Header) bool
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
	h.holdFn = h.hold
	if h.Grant == "" {
		h.Grant = tokenstore.GrantClientCredentials
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
		Issuer:           h.Issuer,
		TokenEndpoint:    h.TokenEndpoint,
		Scopes:           h.Scopes,
		SeedRefreshToken: seed,
	}
	res := h.newResolver()
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
			ClientID:     h.ClientID,
			ClientSecret: secret,
			AuthMethod:   authMethod(h.ClientAuth),
		},
		authConfigured:     h.ClientAuth != "",
		resource:           h.Resource,
		revocationEndpoint: h.RevocationEndpoint,
		logger:             h.logger,
	}
	h.noteChallenge = res.noteChallenge
	h.manager = app.Manager()
	h.cred = h.manager.Credential(spec, req)
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

// newResolver builds the endpoint resolver: static when token_endpoint is
// configured, discovery otherwise.
func (h *Handler) newResolver() *resolver {
	r := &resolver{resource: h.Resource, issuer: h.Issuer, logger: h.logger}
	if h.TokenEndpoint != "" {
		r.static = &endpoints{Issuer: h.Issuer, TokenEndpoint: h.TokenEndpoint, RevocationEndpoint: h.RevocationEndpoint}
		return r
	}
	allowHosts := make([]string, 0, len(h.DiscoveryAllowHosts)+2)
	for _, host := range h.DiscoveryAllowHosts {
		allowHosts = append(allowHosts, strings.ToLower(host))
	}
	allowPrivate := false
	for _, raw := range []string{h.Resource, h.Issuer} {
		if u, err := url.Parse(raw); err == nil && u.Host != "" && discovery.IsPrivateHost(u.Hostname()) {
			// The configured resource or issuer is itself private:
			// its metadata and authorization server may be too.
			allowPrivate = true
		}
	}
	r.client = discovery.NewClient(discovery.Options{
		AllowHTTP:    h.InsecureAllowHTTP,
		AllowPrivate: allowPrivate,
		AllowHosts:   allowHosts,
		OnFetch:      func(outcome string) { gatewayMetrics.discoveryFetches.WithLabelValues(outcome).Inc() },
	})
	return r
}

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
	if h.TokenEndpoint != "" {
		if err := checkURL("token_endpoint", h.TokenEndpoint, h.InsecureAllowHTTP); err != nil {
			return err
		}
	}
	if h.Issuer != "" {
		if err := checkURL("issuer", h.Issuer, h.InsecureAllowHTTP); err != nil {
			return err
		}
		if u, _ := url.Parse(h.Issuer); u.RawQuery != "" {
			return fmt.Errorf("issuer: must not contain a query (RFC 8414 §2)")
		}
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
	case "", "basic", "post":
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

// Cleanup releases the handler's use of its credential; credentials no
// configuration uses any more are collected after a grace period.
func (h *Handler) Cleanup() error {
	if h.cred != nil && h.manager != nil {
		h.manager.Release(h.cred)
	}
	return nil
}

// Interface guards
var (
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
