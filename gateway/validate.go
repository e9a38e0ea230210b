package gateway

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Validate checks the configuration (placeholders already expanded);
// each message names the subdirective. Defaults are applied first.
func (c *Config) Validate() error {
	c.applyDefaults()
	x := c
	if x.Resource == "" {
		return fmt.Errorf("resource: required")
	}
	for _, u := range []struct{ name, val string }{
		{"resource", x.Resource},
		{"token_endpoint", x.TokenEndpoint},
		{"issuer", x.Issuer},
		{"revocation_endpoint", x.RevocationEndpoint},
	} {
		if u.val == "" {
			continue
		}
		if err := CheckURL(u.name, u.val, c.InsecureAllowHTTP); err != nil {
			return err
		}
	}
	if x.Issuer != "" {
		if u, _ := url.Parse(x.Issuer); u.RawQuery != "" {
			return fmt.Errorf("issuer: must not contain a query (RFC 8414 §2)")
		}
	}
	for _, ti := range x.TrustedIssuers {
		if err := CheckURL("trusted_issuers", ti, c.InsecureAllowHTTP); err != nil {
			return err
		}
	}
	if x.ClientID == "" && c.Grant != tokenstore.GrantAuthorizationCode {
		return fmt.Errorf("client_id: required")
	}
	if err := c.validateAuthorizationCode(); err != nil {
		return err
	}
	switch c.Grant {
	case tokenstore.GrantClientCredentials:
		if c.RefreshToken != "" {
			return fmt.Errorf("refresh_token: given with grant client_credentials; use grant refresh_token (or leave grant out)")
		}
	case tokenstore.GrantRefreshToken:
		if c.RefreshToken == "" {
			return fmt.Errorf("refresh_token: required for grant refresh_token")
		}
	case tokenstore.GrantAuthorizationCode:
		if c.RefreshToken != "" {
			return fmt.Errorf("refresh_token: not used with grant authorization_code (the user's consent provides it)")
		}
	case tokenstore.GrantJWTBearer:
		if x.AssertionFile == "" {
			return fmt.Errorf("assertion_file: required for grant jwt_bearer")
		}
		if c.RefreshToken != "" {
			return fmt.Errorf("refresh_token: not used with grant jwt_bearer")
		}
	case tokenstore.GrantTokenExchange, tokenstore.GrantIDJAG:
		if c.RefreshToken != "" {
			return fmt.Errorf("refresh_token: not used with grant %s (each request brings its subject token)", c.Grant)
		}
	default:
		return fmt.Errorf("grant: unknown grant %q (want %s)", c.Grant, GrantNames)
	}
	if err := c.validateExchange(); err != nil {
		return err
	}
	if x.AssertionFile != "" && c.Grant != tokenstore.GrantJWTBearer {
		return fmt.Errorf("assertion_file: only with grant jwt_bearer")
	}
	if err := c.validateClientAuth(); err != nil {
		return err
	}
	for _, p := range c.UpstreamErrors {
		if !slices.Contains(upstreamPresets, p) {
			return fmt.Errorf("upstream_errors: unknown preset %q (want one of %s)", p, strings.Join(upstreamPresets, ", "))
		}
	}
	if err := CheckErrorAliases(c.ErrorAliases); err != nil {
		return err
	}
	if c.MaxReplayBody < 0 {
		return fmt.Errorf("max_replay_body: must be positive")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout: must be positive")
	}
	if c.TokenWait < 0 {
		return fmt.Errorf("token_wait: must be positive")
	}
	for _, list := range []struct {
		name   string
		scopes []string
	}{{"scope", c.Scopes}, {"max_scope", c.MaxScope}} {
		if len(list.scopes) > tokenstore.MaxScopes {
			return fmt.Errorf("%s: at most %d scopes", list.name, tokenstore.MaxScopes)
		}
		for _, s := range list.scopes {
			if s == "" || strings.ContainsAny(s, " \t\"\\") {
				return fmt.Errorf("%s: invalid scope token %q", list.name, s)
			}
		}
	}
	return nil
}

// upstreamPresets are the accepted upstream_errors values.
var upstreamPresets = []string{"slack"}

// CheckErrorAliases accepts only aliases onto standard codes.
func CheckErrorAliases(aliases map[string]string) error {
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

// CheckURL requires an absolute https URL (http only when allowed)
// without userinfo or fragment.
func CheckURL(name, raw string, allowHTTP bool) error {
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

// validateAuthorizationCode checks the authorization-code subdirectives.
func (c *Config) validateAuthorizationCode() error {
	x := c
	authcode := c.Grant == tokenstore.GrantAuthorizationCode
	if !authcode {
		for _, f := range []struct{ name, val string }{
			{"redirect_uri", c.RedirectURI}, {"client_metadata_url", c.ClientMetadataURL},
		} {
			if f.val != "" {
				return fmt.Errorf("%s: only with grant authorization_code", f.name)
			}
		}
		if len(c.AuthorizationParams) > 0 {
			return fmt.Errorf("authorization_param: only with grant authorization_code")
		}
		if c.MaxPendingAuthorizations != 0 {
			return fmt.Errorf("max_pending_authorizations: only with grant authorization_code")
		}
		if c.CredentialGroup != "" {
			return fmt.Errorf("credential_group: only with grant authorization_code and principal")
		}
		if c.Principal != "" && !isExchange(c.Grant) {
			return fmt.Errorf("principal: only with grant authorization_code, token_exchange or id_jag")
		}
		return checkPlaceholder("principal", c.Principal)
	}
	if x.RedirectURI == "" {
		return fmt.Errorf("redirect_uri: required for grant authorization_code (an absolute https URL whose path reaches this handler)")
	}
	if err := CheckURL("redirect_uri", x.RedirectURI, c.InsecureAllowHTTP); err != nil {
		return err
	}
	if x.ClientMetadataURL != "" {
		if err := CheckURL("client_metadata_url", x.ClientMetadataURL, c.InsecureAllowHTTP); err != nil {
			return err
		}
	}
	if err := checkPlaceholder("principal", c.Principal); err != nil {
		return err
	}
	if c.CredentialGroup != "" && c.Principal == "" {
		return fmt.Errorf("credential_group: only with principal (a shared credential has no users to group)")
	}
	if c.AuthorizationStateTTL < 0 || c.AuthorizationStateTTL > time.Hour {
		return fmt.Errorf("authorization_state_ttl: must be positive and at most 1h")
	}
	if c.MaxPendingAuthorizations < 0 {
		return fmt.Errorf("max_pending_authorizations: must be positive")
	}
	for name := range c.AuthorizationParams {
		switch name {
		case "response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope", "resource":
			return fmt.Errorf("authorization_param: %s is set by the gateway", name)
		}
	}
	return nil
}

// validateClientAuth checks client_auth against what it needs.
func (c *Config) validateClientAuth() error {
	x := c
	method, ok := clientAuthMethods[c.ClientAuth]
	if !ok && c.ClientAuth != "" {
		return fmt.Errorf("client_auth: unknown method %q (want basic, post, none, private_key_jwt or client_secret_jwt)", c.ClientAuth)
	}
	switch method {
	case oauthclient.AuthPrivateKeyJWT:
		if x.ClientKey == "" {
			return fmt.Errorf("client_auth: private_key_jwt needs client_key")
		}
	case oauthclient.AuthClientSecretJWT, oauthclient.AuthBasic, oauthclient.AuthPost:
		if x.ClientSecret == "" {
			return fmt.Errorf("client_auth: %s needs client_secret", c.ClientAuth)
		}
	case oauthclient.AuthNone:
		if x.ClientSecret != "" || x.ClientKey != "" {
			return fmt.Errorf("client_auth: none sends only client_id; remove client_secret and client_key")
		}
	}
	if (method == oauthclient.AuthPrivateKeyJWT || method == oauthclient.AuthClientSecretJWT || x.ClientKey != "") &&
		x.TokenEndpoint != "" && x.Issuer == "" {
		return fmt.Errorf("issuer: required with token_endpoint for signed client assertions (the issuer is their audience)")
	}
	if x.JWKSURI != "" {
		if err := CheckURL("jwks_uri", x.JWKSURI, c.InsecureAllowHTTP); err != nil {
			return err
		}
		if x.ClientKey == "" {
			return fmt.Errorf("jwks_uri: publishes client_key's public key; set client_key")
		}
	}
	return nil
}

// GrantNames lists the grants in errors.
const GrantNames = "client_credentials, refresh_token, authorization_code, jwt_bearer, token_exchange or id_jag"

// checkPlaceholder: a per-request value must be exactly one placeholder
// such as {http.auth.user.id} (empty is allowed: not configured).
func checkPlaceholder(name, v string) error {
	if v != "" && (!strings.HasPrefix(v, "{") || !strings.HasSuffix(v, "}") || strings.Count(v, "{") != 1) {
		return fmt.Errorf("%s: must be one placeholder such as {http.auth.user.id}, got %q", name, v)
	}
	return nil
}

// validateExchange checks the subdirectives of grants token_exchange and
// id_jag, and that no other grant uses them.
func (c *Config) validateExchange() error {
	x := c
	if !isExchange(c.Grant) {
		for _, f := range []struct{ name, val string }{
			{"subject_token", c.SubjectToken}, {"subject_token_type", c.SubjectTokenType},
			{"idp_token_endpoint", c.IDPTokenEndpoint}, {"idp_client_id", c.IDPClientID}, {"idp_client_secret", c.IDPClientSecret},
		} {
			if f.val != "" {
				return fmt.Errorf("%s: only with grant token_exchange or id_jag", f.name)
			}
		}
		if c.ExchangeRate != 0 || c.ExchangeBurst != 0 {
			return fmt.Errorf("exchange_rate: only with grant token_exchange or id_jag")
		}
		if c.ExchangeClientRate != 0 || c.ExchangeClientBurst != 0 {
			return fmt.Errorf("exchange_rate_per_client: only with grant token_exchange or id_jag")
		}
		return nil
	}
	if err := checkExchangeRate("exchange_rate", c.ExchangeRate, c.ExchangeBurst); err != nil {
		return err
	}
	if err := checkExchangeRate("exchange_rate_per_client", c.ExchangeClientRate, c.ExchangeClientBurst); err != nil {
		return err
	}
	if c.SubjectToken == "" {
		return fmt.Errorf("subject_token: required for grant %s (a placeholder such as {http.request.header.X-Id-Token})", c.Grant)
	}
	if err := checkPlaceholder("subject_token", c.SubjectToken); err != nil {
		return err
	}
	if c.SubjectTokenType != "" {
		if _, err := oauthclient.SubjectTokenTypeURN(c.SubjectTokenType); err != nil {
			return fmt.Errorf("subject_token_type: %w", err)
		}
	}
	if c.Grant != tokenstore.GrantIDJAG {
		if c.IDPTokenEndpoint != "" || c.IDPClientID != "" || c.IDPClientSecret != "" {
			return fmt.Errorf("idp_token_endpoint, idp_client_id and idp_client_secret: only with grant id_jag")
		}
		return nil
	}
	if x.IDPTokenEndpoint == "" {
		return fmt.Errorf("idp_token_endpoint: required for grant id_jag (the identity provider's token endpoint)")
	}
	if err := CheckURL("idp_token_endpoint", x.IDPTokenEndpoint, c.InsecureAllowHTTP); err != nil {
		return err
	}
	if x.IDPClientID == "" {
		return fmt.Errorf("idp_client_id: required for grant id_jag (the gateway's client at the identity provider)")
	}
	return nil
}

// KnownClientAuth reports whether name is a client_auth method the
// gateway knows (the short names and the RFC 8414 ones).
func KnownClientAuth(name string) bool {
	_, ok := clientAuthMethods[name]
	return ok
}
