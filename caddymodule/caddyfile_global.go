package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/oauthgw/caddy-oauth-gateway/redact"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore/redisbackend"
)

var globalSubdirectives = []string{"storage", "insecure_plaintext", "encryption_key", "cache_size", "refresh_skew"}

var redisSubdirectives = []string{"username", "password", "db", "tls", "sentinel", "sentinel_password", "cluster", "key_prefix"}

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
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("oauth_gateway: the global option is given twice; merge the two blocks into one")
	}
	app := new(App)
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]int{}
	for d.NextBlock(0) {
		if line, dup := seen[d.Val()]; dup && d.Val() != "encryption_key" {
			return nil, d.Errf("%s: given twice (first on line %d); give it once", d.Val(), line)
		}
		seen[d.Val()] = d.Line()
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
			dur, err := parsePositiveDuration(d.Val())
			if err != nil {
				return nil, d.Errf("refresh_skew: %v", err)
			}
			app.RefreshSkew = caddy.Duration(dur)
		default:
			return nil, d.Errf("unrecognized subdirective %s%s", d.Val(), suggest(d.Val(), globalSubdirectives))
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
			return nil, d.Errf("unrecognized storage redis subdirective %s%s", name, suggest(name, redisSubdirectives))
		}
	}
	if rc.Cluster && rc.SentinelMaster != "" {
		return nil, d.Err("storage redis: cluster and sentinel are exclusive")
	}
	return rc, nil
}
