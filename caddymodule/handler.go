package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/gateway"
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
	// §2.3.1) or "post" (in the request body). The RFC 8414 names
	// client_secret_basic and client_secret_post are accepted too.
	// Default: chosen from the server's
	// token_endpoint_auth_methods_supported when discovered (basic when
	// offered), else basic.
	ClientAuth string `json:"client_auth,omitempty"`

	// AssertionFile is the JWT the jwt_bearer grant presents (RFC 7523
	// §2.1), e.g. a Kubernetes projected service-account token; it is
	// read again for every token request, since platforms rotate it.
	AssertionFile string `json:"assertion_file,omitempty"`

	// ClientKey is the private key file for client_auth private_key_jwt
	// (RFC 7523 §2.2): PEM (PKCS#8, PKCS#1, SEC1) or a JWK; the algorithm
	// comes from the key (ES256, RS256, EdDSA). Setting it makes
	// private_key_jwt possible when client_auth is not set.
	ClientKey string `json:"client_key,omitempty"`

	// ClientKeyID is the key's kid (default: its RFC 7638 thumbprint).
	ClientKeyID string `json:"client_key_id,omitempty"`

	// JWKSURI is where the gateway publishes its public keys: an absolute
	// URL whose path reaches this handler, which answers it. Give it to
	// the authorization server (or it appears in the client metadata
	// document) so it can verify private_key_jwt assertions.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// Grant is "client_credentials" (default) or "refresh_token" (implied
	// by a refresh_token seed).
	Grant string `json:"grant,omitempty"`

	// RefreshToken is the seed for grant refresh_token. It is used only
	// while the store holds nothing newer obtained from this same seed;
	// changing it replaces the stored credential. Placeholders are expanded.
	RefreshToken string `json:"refresh_token,omitempty"`

	// Scopes are requested with every token.
	Scopes []string `json:"scopes,omitempty"`

	// MaxScope bounds step-up: an upstream's 403 insufficient_scope is
	// answered only for scopes in this list. Default: the configured
	// Scopes plus the protected resource metadata's scopes_supported.
	// Anything else gets the explanatory 403.
	MaxScope []string `json:"max_scope,omitempty"`

	// TrustedIssuers are authorization servers (issuer identifiers) that
	// discovery may send this credential's client secret or refresh token
	// to, besides those on the resource's registrable domain. Without
	// them, a discovered issuer on another domain gets a 502 naming this
	// subdirective.
	TrustedIssuers []string `json:"trusted_issuers,omitempty"`

	// OmitResourceParameter stops sending the RFC 8707 `resource`
	// parameter in token requests (Caddyfile: `resource_parameter off`).
	// Microsoft Entra ID v2 endpoints reject it next to `scope`.
	OmitResourceParameter bool `json:"omit_resource_parameter,omitempty"`

	// TokenWait bounds how long a client request waits for a token
	// (default 5s). The refresh itself goes on in the background, so a
	// slow token endpoint answers the client with 503 and Retry-After
	// instead of holding it.
	TokenWait caddy.Duration `json:"token_wait,omitempty"`

	// MaxReplayBody is the largest request body (in bytes) buffered so the
	// request can be replayed after a 401 (default 1 MiB). Larger bodies,
	// and bodies of unknown length, stream through and a 401 for them
	// reaches the client.
	MaxReplayBody int64 `json:"max_replay_body,omitempty"`

	// InsecureAllowHTTP permits http:// token endpoint and metadata URLs,
	// and http endpoints and authorization servers named by metadata.
	// For development and tests only: it sends credentials in clear text.
	InsecureAllowHTTP bool `json:"insecure_allow_http,omitempty"`

	// Timeout bounds each token endpoint request (default 15s; must be
	// positive when set).
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

	// RedirectURI is the authorization-code flow's callback (grant
	// authorization_code): an absolute https URL whose path reaches this
	// handler, which answers it (and its siblings `start` and
	// `disconnect` in the same directory) itself.
	RedirectURI string `json:"redirect_uri,omitempty"`

	// Principal is a placeholder naming the user a request is made for,
	// such as {http.auth.user.id}: each user then has a credential of
	// their own. An empty value at request time is refused (401), never
	// served with a shared credential. Default: one shared credential,
	// which only an operator can authorize.
	Principal string `json:"principal,omitempty"`

	// CredentialGroup makes handlers share their users' credentials on
	// purpose: per-user credentials of handlers with the same group are
	// one. Without it a per-user credential belongs to its handler's
	// identity front (the principal placeholder and the redirect_uri's
	// site), so `principal` alice from basic_auth on one site and
	// `X-User: alice` on another never share a credential.
	CredentialGroup string `json:"credential_group,omitempty"`

	// ClientMetadataURL enables Client ID Metadata Documents: when the
	// authorization server supports them and no client_id is configured,
	// this URL (whose path must reach this handler, which serves the
	// document) is the client_id.
	ClientMetadataURL string `json:"client_metadata_url,omitempty"`

	// AuthorizationParams are extra parameters of the authorization
	// request, e.g. access_type=offline and prompt=consent for Google.
	AuthorizationParams map[string]string `json:"authorization_params,omitempty"`

	// AuthorizationStateTTL is how long a started authorization may take
	// before its state expires (default 10m).
	AuthorizationStateTTL caddy.Duration `json:"authorization_state_ttl,omitempty"`

	// MaxPendingAuthorizations bounds the authorizations this handler has
	// started and not yet completed, across a fleet (default 1000). A
	// start beyond it is answered 503 with Retry-After. Each user may have
	// 5 outstanding; a sixth start replaces their oldest. Started flows
	// expire after authorization_state_ttl (default 10m, at most 1h).
	MaxPendingAuthorizations int `json:"max_pending_authorizations,omitempty"`

	// SubjectToken is a placeholder for the token each request carries
	// for its user, exchanged by grant token_exchange or id_jag, such as
	// {http.request.header.X-Id-Token} (a leading "Bearer " is removed).
	// A request without one is answered 401.
	SubjectToken string `json:"subject_token,omitempty"`

	// SubjectTokenType is the subject token's type: access_token,
	// id_token, jwt, or a token type URN. Default: id_token for id_jag,
	// access_token for token_exchange.
	SubjectTokenType string `json:"subject_token_type,omitempty"`

	// IDPTokenEndpoint is the identity provider's token endpoint, where
	// grant id_jag exchanges the user's ID token for an ID-JAG.
	IDPTokenEndpoint string `json:"idp_token_endpoint,omitempty"`

	// IDPClientID and IDPClientSecret authenticate the gateway at the
	// identity provider (HTTP Basic). Use placeholders for the secret.
	IDPClientID     string `json:"idp_client_id,omitempty"`
	IDPClientSecret string `json:"idp_client_secret,omitempty"`

	// ExchangeRate bounds the exchanges of grants token_exchange and
	// id_jag that reach the authorization server (for id_jag the identity
	// provider first), for this handler as a whole: a token bucket
	// refilled at this many exchanges a second (default 20), holding at
	// most ExchangeBurst (default twice the rate). A cached exchanged
	// token, a subject token remembered as refused (30 s) and a request
	// joining an exchange under way cost nothing. Over it, requests that
	// need an exchange get 429 with Retry-After.
	ExchangeRate  float64 `json:"exchange_rate,omitempty"`
	ExchangeBurst int     `json:"exchange_burst,omitempty"`

	// ExchangeRatePerClient and ExchangeBurstPerClient are the same bound
	// per client (default 2 a second, burst 4): the principal when
	// principal is set, else the address of the request's direct peer
	// (an IPv6 address by its /64). Behind a proxy, that is the proxy's
	// address for every client: set principal, or raise this to
	// exchange_rate.
	ExchangeRatePerClient  float64 `json:"exchange_rate_per_client,omitempty"`
	ExchangeBurstPerClient int     `json:"exchange_burst_per_client,omitempty"`

	// DPoP binds tokens to a key (RFC 9449, ES256): one key per
	// credential, stored with it (encrypted under encryption_key), a
	// proof on every token request and upstream request. A server that
	// still issues Bearer tokens gets them presented as Bearer.
	DPoP bool `json:"dpop,omitempty"`

	// Source is where the handler was configured ("Caddyfile:12"), set by
	// the Caddyfile adapter so errors can name it.
	Source string `json:"source,omitempty"`

	// gw is the gateway this handler delegates every request to, built
	// from the configuration with placeholders expanded (the exported
	// fields keep what was written, so Caddy's own logs and /config/ show
	// placeholders rather than secrets).
	gw     *gateway.Gateway
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Cleanup releases the handler's use of its credential; credentials no
// configuration uses any more are collected after a grace period.
func (h *Handler) Cleanup() error {
	if h.gw != nil {
		h.gw.Close()
	}
	return nil
}

// ServeHTTP delegates to the gateway core with next as the upstream. A
// failure before anything was written keeps its status as Caddy's
// handler error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	err := h.gw.Serve(w, r, next)
	var he *gateway.HTTPError
	if err != nil && errors.As(err, &he) {
		return caddyhttp.Error(he.Status, he.Err)
	}
	return err
}

// Interface guards
var (
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
