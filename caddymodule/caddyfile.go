package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/oauthgw/caddy-oauth-gateway/redact"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore/redisbackend"
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
//		discovery_allow_hosts <host> [<host>...]
//		revocation_endpoint <url>
//		client_id       <id>
//		client_secret   <secret>
//		client_auth     basic|post
//		grant           client_credentials|refresh_token
//		refresh_token   <token>
//		scope           <scope> [<scope>...]
//		max_replay_body <size>
//		timeout         <duration>
//		upstream_errors slack
//		error_alias     <vendor_code> <standard_code>
//		insecure_allow_http
//	}
//
// Secrets may be placeholders such as {env.CLIENT_SECRET}.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		switch name {
		case "resource", "token_endpoint", "issuer", "revocation_endpoint", "client_id", "client_secret", "client_auth", "grant", "refresh_token":
			val, err := singleArg(d)
			if err != nil {
				return err
			}
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
				if val != "basic" && val != "post" {
					return d.Errf("client_auth: unknown method %q (want basic or post)", val)
				}
				h.ClientAuth = val
			case "grant":
				if val != "client_credentials" && val != "refresh_token" {
					return d.Errf("grant: unknown grant %q (want client_credentials or refresh_token)", val)
				}
				h.Grant = val
			case "refresh_token":
				h.RefreshToken = val
			}
		case "scope":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				h.Scopes = append(h.Scopes, strings.Fields(a)...)
			}
		case "max_replay_body":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil {
				return d.Errf("max_replay_body: invalid size %q: %v", d.Val(), err)
			}
			h.MaxReplayBody = int64(size)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("timeout: %v", err)
			}
			h.Timeout = caddy.Duration(dur)
		case "discovery_allow_hosts":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.DiscoveryAllowHosts = append(h.DiscoveryAllowHosts, args...)
		case "upstream_errors":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.UpstreamErrors = append(h.UpstreamErrors, args...)
		case "error_alias":
			if err := parseErrorAlias(d, &h.ErrorAliases); err != nil {
				return err
			}
		case "insecure_allow_http":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.InsecureAllowHTTP = true
		default:
			return d.Errf("unrecognized subdirective %s", name)
		}
	}
	return nil
}

// parseGlobalOption parses the oauth_gateway global option:
//
//	oauth_gateway {
//		storage memory | file [<dir>] | caddy
//		storage redis <redis-url> [<redis-url>...] {
//			username <name>
//			password <password>
//			db <n>
//			tls
//			sentinel <master-name>
//			sentinel_password <password>
//			cluster
//			key_prefix <prefix>
//		}
//		encryption_key <base64 32 bytes> [<older keys>...]
//		insecure_plaintext
//		cache_size <n>
//		refresh_skew <duration>
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			sc := &StorageConfig{Type: d.Val()}
			switch sc.Type {
			case "memory", "caddy":
				if d.NextArg() {
					return nil, d.ArgErr()
				}
			case "file":
				if d.NextArg() {
					sc.Dir = d.Val()
				}
				if d.NextArg() {
					return nil, d.ArgErr()
				}
			case "redis":
				rc, err := parseRedis(d)
				if err != nil {
					return nil, err
				}
				sc.Redis = rc
			default:
				return nil, d.Errf("storage: unknown type %q (want memory, file, caddy or redis)", sc.Type)
			}
			app.Storage = sc
		case "insecure_plaintext":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.InsecurePlaintext = true
		case "encryption_key":
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return nil, d.ArgErr()
			}
			app.EncryptionKeys = append(app.EncryptionKeys, keys...)
		case "cache_size":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return nil, d.Errf("cache_size: want a positive integer, got %q", d.Val())
			}
			app.CacheSize = n
		case "refresh_skew":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur < 0 {
				return nil, d.Errf("refresh_skew: invalid duration %q", d.Val())
			}
			app.RefreshSkew = caddy.Duration(dur)
		default:
			return nil, d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	// Literal keys are checked now; placeholders at provisioning.
	var literal []string
	for _, k := range app.EncryptionKeys {
		if !strings.Contains(k, "{") {
			literal = append(literal, k)
		}
	}
	if _, err := decodeKeys(literal); err != nil {
		return nil, d.Err(err.Error())
	}
	return httpcaddyfile.App{
		Name:  "oauth_gateway",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// parseRedis parses `storage redis <url>... { ... }`.
func parseRedis(d *caddyfile.Dispenser) (*redisbackend.Config, error) {
	rc := &redisbackend.Config{URLs: d.RemainingArgs()}
	if len(rc.URLs) == 0 {
		return nil, d.Err("storage redis: at least one redis:// or rediss:// URL is required")
	}
	for _, u := range rc.URLs {
		if !strings.HasPrefix(u, "redis://") && !strings.HasPrefix(u, "rediss://") && !strings.HasPrefix(u, "{") {
			return nil, d.Errf("storage redis: %q is not a redis:// or rediss:// URL", redact.URL(u))
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch name {
		case "username", "password", "sentinel", "sentinel_password", "key_prefix", "db":
			val, err := singleArg(d)
			if err != nil {
				return nil, err
			}
			switch name {
			case "username":
				rc.Username = val
			case "password":
				rc.Password = val
			case "sentinel":
				rc.SentinelMaster = val
			case "sentinel_password":
				rc.SentinelPassword = val
			case "key_prefix":
				rc.KeyPrefix = val
			case "db":
				n, err := strconv.Atoi(val)
				if err != nil || n < 0 {
					return nil, d.Errf("db: want a database number, got %q", val)
				}
				rc.DB = n
			}
		case "tls", "cluster":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if name == "tls" {
				rc.TLS = true
			} else {
				rc.Cluster = true
			}
		default:
			return nil, d.Errf("unrecognized storage redis subdirective %s", name)
		}
	}
	if rc.Cluster && rc.SentinelMaster != "" {
		return nil, d.Err("storage redis: cluster and sentinel are exclusive")
	}
	return rc, nil
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
