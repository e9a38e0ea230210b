package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/gateway"
)

func init() {
	caddy.RegisterModule(NormalizeHandler{})
	httpcaddyfile.RegisterHandlerDirective("oauth_normalize", parseNormalize)
	httpcaddyfile.RegisterDirectiveOrder("oauth_normalize", httpcaddyfile.Before, "reverse_proxy")
}

// NormalizeHandler rewrites an authorization server's non-standard error
// responses into RFC 6749 §5.2 form, so standard OAuth clients work
// against quirky servers. Place it before a reverse_proxy to the server's
// token, revocation or registration endpoint.
//
// Responses to POST requests are held back (up to 1 MiB) and classified:
// any `error` member means failure whatever the status (Slack's HTTP 200
// `{"ok":false,...}`, GitHub's form-encoded bodies), vendor codes are
// mapped to standard ones, and the client receives status 400 (401 with a
// Basic challenge for invalid_client), `application/json` and
// `Cache-Control: no-store`. Successful responses pass byte-identical;
// other methods and larger bodies pass through untouched.
type NormalizeHandler struct {
	// ErrorAliases maps vendor error codes to standard ones, over the
	// built-in table.
	ErrorAliases map[string]string `json:"error_aliases,omitempty"`

	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (NormalizeHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_normalize",
		New: func() caddy.Module { return new(NormalizeHandler) },
	}
}

// Provision implements caddy.Provisioner.
func (n *NormalizeHandler) Provision(ctx caddy.Context) error {
	n.logger = ctx.Logger()
	return nil
}

// Validate implements caddy.Validator.
func (n *NormalizeHandler) Validate() error { return gateway.CheckErrorAliases(n.ErrorAliases) }

// ServeHTTP implements caddyhttp.MiddlewareHandler: the core's
// normalizer with next as the authorization server's response.
func (n *NormalizeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return gateway.Normalize(w, r, next, n.ErrorAliases, n.logger)
}

func parseNormalize(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var n NormalizeHandler
	err := n.UnmarshalCaddyfile(h.Dispenser)
	return &n, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	oauth_normalize [<matcher>] {
//		error_alias <vendor_code> <standard_code>
//	}
func (n *NormalizeHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "error_alias":
			if err := parseErrorAlias(d, &n.ErrorAliases); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*NormalizeHandler)(nil)
	_ caddy.Validator             = (*NormalizeHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*NormalizeHandler)(nil)
	_ caddyfile.Unmarshaler       = (*NormalizeHandler)(nil)
)
