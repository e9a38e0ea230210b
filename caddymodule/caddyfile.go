package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/gateway"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oauth_gateway", parseHandler)
	// Token injection must happen before the request is proxied, so the
	// module orders itself; users need no `order` line.
	httpcaddyfile.RegisterDirectiveOrder("oauth_gateway", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterGlobalOption("oauth_gateway", parseGlobalOption)
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var g Handler
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return &g, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	oauth_gateway [<matcher>] {
//		resource        <url>
//		token_endpoint  <url>
//		issuer          <url>
//		trusted_issuers <url> [<url>...]
//		discovery_allow_hosts <host[:port]> [<host[:port]>...]
//		revocation_endpoint <url>
//		client_id       <id>
//		client_secret   <secret>
//		client_auth     basic|post|none|private_key_jwt|client_secret_jwt
//		assertion_file  <path>
//		client_key      <path>
//		client_key_id   <kid>
//		jwks_uri        <url>
//		grant           client_credentials|refresh_token|authorization_code|jwt_bearer|token_exchange|id_jag
//		subject_token   <placeholder>
//		subject_token_type access_token|id_token|jwt|<urn>
//		idp_token_endpoint <url>
//		idp_client_id   <id>
//		idp_client_secret <secret>
//		exchange_rate   <per_second> [<burst>]
//		exchange_rate_per_client <per_second> [<burst>]
//		dpop
//		redirect_uri    <url>
//		principal       <placeholder>
//		credential_group <name>
//		client_metadata_url <url>
//		authorization_param <name> <value>
//		authorization_state_ttl <duration>
//		max_pending_authorizations <n>
//		refresh_token   <token>
//		scope           <scope> [<scope>...]
//		max_scope       <scope> [<scope>...]
//		resource_parameter on|off
//		max_replay_body <size>
//		timeout         <duration>
//		token_wait      <duration>
//		upstream_errors slack
//		error_alias     <vendor_code> <standard_code>
//		insecure_allow_http
//	}
//
// Every value may be a placeholder such as {env.CLIENT_SECRET}; secrets
// should be. A subdirective that takes one value may be given once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	h.Source = fmt.Sprintf("%s:%d", d.File(), d.Line())
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]int{}
	for d.NextBlock(0) {
		name := d.Val()
		if _, repeatable := repeatableSubdirectives[name]; !repeatable {
			if line, dup := seen[name]; dup {
				return d.Errf("%s: given twice (first on line %d); give it once", name, line)
			}
			seen[name] = d.Line()
		}
		if err := h.unmarshalSubdirective(d, name); err != nil {
			return err
		}
	}
	return nil
}

// handlerSubdirectives are every subdirective the handler accepts; the
// repeatable ones add to a list.
var handlerSubdirectives = []string{"resource", "token_endpoint", "issuer", "trusted_issuers", "discovery_allow_hosts",
	"revocation_endpoint", "client_id", "client_secret", "client_auth", "grant", "refresh_token", "scope", "max_scope",
	"resource_parameter", "max_replay_body", "timeout", "token_wait", "upstream_errors", "error_alias", "insecure_allow_http",
	"redirect_uri", "principal", "credential_group", "client_metadata_url", "authorization_param", "authorization_state_ttl",
	"max_pending_authorizations", "client_key", "client_key_id", "jwks_uri", "assertion_file", "subject_token", "subject_token_type",
	"idp_token_endpoint", "idp_client_id", "idp_client_secret", "exchange_rate", "exchange_rate_per_client", "dpop"}

var repeatableSubdirectives = map[string]struct{}{
	"scope": {}, "max_scope": {}, "trusted_issuers": {}, "discovery_allow_hosts": {}, "upstream_errors": {}, "error_alias": {},
	"authorization_param": {},
}

func (h *Handler) unmarshalSubdirective(d *caddyfile.Dispenser, name string) error {
	switch name {
	case "resource", "token_endpoint", "issuer", "revocation_endpoint", "client_id", "client_secret", "client_auth",
		"grant", "refresh_token", "resource_parameter", "redirect_uri", "principal", "credential_group", "client_metadata_url",
		"client_key", "client_key_id", "jwks_uri", "assertion_file", "subject_token", "subject_token_type",
		"idp_token_endpoint", "idp_client_id", "idp_client_secret":
		val, err := singleArg(d)
		if err != nil {
			return err
		}
		return h.setSingle(d, name, val)
	case "scope", "max_scope", "trusted_issuers", "discovery_allow_hosts", "upstream_errors":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		switch name {
		case "scope":
			for _, a := range args {
				h.Scopes = append(h.Scopes, strings.Fields(a)...)
			}
		case "max_scope":
			for _, a := range args {
				h.MaxScope = append(h.MaxScope, strings.Fields(a)...)
			}
		case "trusted_issuers":
			h.TrustedIssuers = append(h.TrustedIssuers, args...)
		case "discovery_allow_hosts":
			for _, a := range args {
				if err := discovery.CheckAllowHost(a); err != nil {
					return d.Errf("discovery_allow_hosts: %v", err)
				}
			}
			h.DiscoveryAllowHosts = append(h.DiscoveryAllowHosts, args...)
		case "upstream_errors":
			h.UpstreamErrors = append(h.UpstreamErrors, args...)
		}
	case "max_replay_body":
		val, err := singleArg(d)
		if err != nil {
			return err
		}
		size, err := parseSize(val)
		if err != nil {
			return d.Errf("max_replay_body: %v", err)
		}
		h.MaxReplayBody = size
	case "authorization_param":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return d.ArgErr()
		}
		if h.AuthorizationParams == nil {
			h.AuthorizationParams = map[string]string{}
		}
		h.AuthorizationParams[args[0]] = args[1]
	case "timeout", "token_wait", "authorization_state_ttl":
		val, err := singleArg(d)
		if err != nil {
			return err
		}
		dur, err := parsePositiveDuration(val)
		if err != nil {
			return d.Errf("%s: %v", name, err)
		}
		switch name {
		case "timeout":
			h.Timeout = caddy.Duration(dur)
		case "token_wait":
			h.TokenWait = caddy.Duration(dur)
		default:
			h.AuthorizationStateTTL = caddy.Duration(dur)
		}
	case "max_pending_authorizations":
		val, err := singleArg(d)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(val)
		if err != nil || n <= 0 {
			return d.Errf("max_pending_authorizations: want a positive number, got %q", val)
		}
		h.MaxPendingAuthorizations = n
	case "exchange_rate", "exchange_rate_per_client":
		perSecond, burst, err := parseExchangeRate(d, name)
		if err != nil {
			return err
		}
		if name == "exchange_rate" {
			h.ExchangeRate, h.ExchangeBurst = perSecond, burst
		} else {
			h.ExchangeRatePerClient, h.ExchangeBurstPerClient = perSecond, burst
		}
	case "error_alias":
		return parseErrorAlias(d, &h.ErrorAliases)
	case "insecure_allow_http":
		if d.NextArg() {
			return d.ArgErr()
		}
		h.InsecureAllowHTTP = true
	case "dpop":
		if d.NextArg() {
			return d.ArgErr()
		}
		h.DPoP = true
	default:
		return d.Errf("unrecognized subdirective %s%s", name, suggest(name, handlerSubdirectives))
	}
	return nil
}

// setSingle sets a one-value subdirective, checking enumerated values.
func (h *Handler) setSingle(d *caddyfile.Dispenser, name, val string) error {
	switch name {
	case "resource":
		h.Resource = val
	case "token_endpoint":
		h.TokenEndpoint = val
	case "issuer":
		h.Issuer = val
	case "revocation_endpoint":
		h.RevocationEndpoint = val
	case "client_id":
		h.ClientID = val
	case "client_secret":
		h.ClientSecret = val
	case "client_auth":
		if !gateway.KnownClientAuth(val) {
			return d.Errf("client_auth: unknown method %q (want basic, post, none, private_key_jwt or client_secret_jwt)", val)
		}
		h.ClientAuth = val
	case "client_key":
		h.ClientKey = val
	case "assertion_file":
		h.AssertionFile = val
	case "client_key_id":
		h.ClientKeyID = val
	case "jwks_uri":
		h.JWKSURI = val
	case "grant":
		switch val {
		case tokenstore.GrantClientCredentials, tokenstore.GrantRefreshToken, tokenstore.GrantAuthorizationCode,
			tokenstore.GrantJWTBearer, tokenstore.GrantTokenExchange, tokenstore.GrantIDJAG:
		default:
			return d.Errf("grant: unknown grant %q (want %s)", val, gateway.GrantNames)
		}
		h.Grant = val
	case "redirect_uri":
		h.RedirectURI = val
	case "principal":
		h.Principal = val
	case "credential_group":
		h.CredentialGroup = val
	case "client_metadata_url":
		h.ClientMetadataURL = val
	case "subject_token":
		h.SubjectToken = val
	case "subject_token_type":
		h.SubjectTokenType = val
	case "idp_token_endpoint":
		h.IDPTokenEndpoint = val
	case "idp_client_id":
		h.IDPClientID = val
	case "idp_client_secret":
		h.IDPClientSecret = val
	case "refresh_token":
		h.RefreshToken = val
	case "resource_parameter":
		switch val {
		case "on":
			h.OmitResourceParameter = false
		case "off":
			h.OmitResourceParameter = true
		default:
			return d.Errf("resource_parameter: want on or off, got %q", val)
		}
	}
	return nil
}

// parseSize reads a positive byte size such as 512KiB or 1MiB.
func parseSize(val string) (int64, error) {
	n, err := humanize.ParseBytes(val)
	if err != nil || n == 0 || strings.HasPrefix(strings.TrimSpace(val), "-") || n > 1<<40 {
		return 0, fmt.Errorf("%q is not a positive size; write a number of bytes with an optional unit, e.g. 65536, 512KiB or 2MiB", val)
	}
	return int64(n), nil
}

// parsePositiveDuration reads a duration that must be above zero.
func parsePositiveDuration(val string) (time.Duration, error) {
	dur, err := caddy.ParseDuration(val)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write e.g. 500ms, 10s or 2m", val)
	}
	if dur <= 0 {
		return 0, fmt.Errorf("%q: must be positive", val)
	}
	return dur, nil
}

// singleArg reads exactly one argument.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return val, nil
}

// parseExchangeRate reads `<name> <per_second> [<burst>]`: a positive
// number of exchanges a second (a fraction allowed) and a positive burst
// (0 when left out: the gateway's default, twice the rate).
func parseExchangeRate(d *caddyfile.Dispenser, name string) (float64, int, error) {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return 0, 0, d.Errf("%s: want <per_second> [<burst>], e.g. %s 20 40", name, name)
	}
	perSecond, err := strconv.ParseFloat(args[0], 64)
	if err != nil || !(perSecond > 0) || math.IsInf(perSecond, 0) {
		return 0, 0, d.Errf("%s: want a positive number of exchanges per second, got %q", name, args[0])
	}
	burst := 0
	if len(args) == 2 {
		if burst, err = strconv.Atoi(args[1]); err != nil || burst <= 0 {
			return 0, 0, d.Errf("%s: want a positive burst, got %q", name, args[1])
		}
	}
	return perSecond, burst, nil
}

// parseErrorAlias reads `error_alias <vendor_code> <standard_code>` into m.
func parseErrorAlias(d *caddyfile.Dispenser, m *map[string]string) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.ArgErr()
	}
	if *m == nil {
		*m = make(map[string]string)
	}
	(*m)[args[0]] = args[1]
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// suggest returns ` (did you mean "x"?)` for the known name nearest to
// name, when one is close enough to be a likely typo.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		d := editDistance(name, k)
		if strings.HasPrefix(k, name) || strings.HasPrefix(name, k) {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
