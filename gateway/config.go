package gateway

import (
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Config is one gateway's settings, with every placeholder already
// expanded by the server that embeds the gateway (Caddy's adapter
// expands {env.*} and {file.*} at provisioning). The Caddy adapter's
// Handler documents each field as a user writes it; the comments here say
// what the core does with it.
type Config struct {
	// Resource is the protected resource's URL: the credential's identity
	// and the RFC 8707 `resource` parameter. Required.
	Resource string
	// TokenEndpoint, when set, is used as is (no discovery).
	TokenEndpoint string
	// Issuer pins the authorization server and skips protected resource
	// metadata; without it the first issuer discovered is pinned.
	Issuer string
	// DiscoveryAllowHosts may be reached by discovery even when they
	// resolve to private, loopback or link-local addresses.
	DiscoveryAllowHosts []string
	// RevocationEndpoint is the RFC 7009 endpoint (default: advertised).
	RevocationEndpoint string
	// ClientID and ClientSecret are the gateway's client at the
	// authorization server; the secret is never logged.
	ClientID, ClientSecret string
	// ClientAuth is the token endpoint authentication method ("basic",
	// "post", "none", "private_key_jwt", "client_secret_jwt" or the RFC
	// 8414 names); default: chosen from the server's metadata.
	ClientAuth string
	// AssertionFile is the jwt_bearer grant's assertion, read per request.
	AssertionFile string
	// ClientKey is the private key file for private_key_jwt; ClientKeyID
	// its kid (default: the RFC 7638 thumbprint).
	ClientKey, ClientKeyID string
	// JWKSURI is where the gateway publishes its public keys (this
	// gateway answers its path).
	JWKSURI string
	// Grant is one of the tokenstore.Grant* names (default
	// client_credentials, or refresh_token with a RefreshToken seed).
	Grant string
	// RefreshToken is the seed of grant refresh_token.
	RefreshToken string
	// Scopes are requested with every token.
	Scopes []string
	// MaxScope bounds step-up (default: Scopes plus the resource's
	// scopes_supported).
	MaxScope []string
	// TrustedIssuers may receive this credential's secrets when
	// discovered on another registrable domain than the resource.
	TrustedIssuers []string
	// OmitResourceParameter stops sending RFC 8707 `resource`.
	OmitResourceParameter bool
	// TokenWait bounds how long a request waits for a token (default 5s).
	TokenWait time.Duration
	// MaxReplayBody is the largest request body held for a replay
	// (default 1 MiB).
	MaxReplayBody int64
	// InsecureAllowHTTP permits http:// endpoints (tests only).
	InsecureAllowHTTP bool
	// Timeout bounds each token endpoint request (default 15s).
	Timeout time.Duration
	// UpstreamErrors names presets for non-standard upstream token
	// errors ("slack").
	UpstreamErrors []string
	// ErrorAliases maps vendor token endpoint error codes to RFC 6749 ones.
	ErrorAliases map[string]string
	// RedirectURI is the authorization-code flow's callback; its
	// directory also holds `start` and `disconnect`, answered here.
	RedirectURI string
	// Principal names the user a request is made for, as the embedding
	// server writes it (Caddy: one placeholder such as
	// {http.auth.user.id}); Options.Principal evaluates it per request.
	// Empty: one shared credential.
	Principal string
	// CredentialGroup lets handlers share their users' credentials on
	// purpose: handlers naming the same group share them. Without one, a
	// per-user credential belongs to its handler's identity front (the
	// principal expression and the redirect_uri's origin), so alice of one
	// front never uses alice's credential of another.
	CredentialGroup string
	// ClientMetadataURL is the Client ID Metadata Document's URL (served
	// here) used as client_id when the server supports it.
	ClientMetadataURL string
	// AuthorizationParams are extra authorization request parameters.
	AuthorizationParams map[string]string
	// AuthorizationStateTTL bounds a started authorization (default 10m).
	AuthorizationStateTTL time.Duration
	// MaxPendingAuthorizations bounds the authorizations this handler
	// has started and not yet completed, across a fleet (default 1000;
	// each user may have 5, a new start replacing their oldest).
	MaxPendingAuthorizations int
	// SubjectToken names the token a request carries for its user (grants
	// token_exchange and id_jag), as the embedding server writes it;
	// Options.SubjectToken reads it per request.
	SubjectToken string
	// SubjectTokenType is access_token, id_token, jwt or a URN.
	SubjectTokenType string
	// IDPTokenEndpoint, IDPClientID and IDPClientSecret: the identity
	// provider of grant id_jag.
	IDPTokenEndpoint, IDPClientID, IDPClientSecret string
	// ExchangeRate and ExchangeBurst bound the exchanges (grants
	// token_exchange and id_jag) that reach the authorization server for
	// this gateway as a whole: a token bucket of ExchangeRate exchanges a
	// second holding at most ExchangeBurst (default 20 a second, burst
	// 40; a rate without a burst: burst twice the rate).
	ExchangeRate  float64
	ExchangeBurst int
	// ExchangeClientRate and ExchangeClientBurst bound them likewise per
	// client: the principal when Principal is set, else the request's
	// direct peer address (r.RemoteAddr; an IPv6 address by its /64).
	// Default 2 a second, burst 4.
	ExchangeClientRate  float64
	ExchangeClientBurst int
	// DPoP binds tokens to a key (RFC 9449).
	DPoP bool
}

const (
	defaultMaxReplayBody = 1 << 20
	defaultTokenWait     = 5 * time.Second
)

// applyDefaults fills in what the configuration left out.
func (c *Config) applyDefaults() {
	if c.Grant == "" {
		c.Grant = tokenstore.GrantClientCredentials
		if c.RefreshToken != "" {
			c.Grant = tokenstore.GrantRefreshToken
		}
	}
	if c.MaxReplayBody == 0 {
		c.MaxReplayBody = defaultMaxReplayBody
	}
	if c.TokenWait == 0 {
		c.TokenWait = defaultTokenWait
	}
	if isExchange(c.Grant) {
		c.ExchangeRate, c.ExchangeBurst = exchangeRateDefaults(c.ExchangeRate, c.ExchangeBurst, defaultExchangeRate)
		c.ExchangeClientRate, c.ExchangeClientBurst = exchangeRateDefaults(c.ExchangeClientRate, c.ExchangeClientBurst, defaultExchangeClientRate)
	}
}
