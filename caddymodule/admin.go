package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgw/caddy-oauth-gateway/gateway"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI mounts the gateway's operator API (gateway.Admin, which lists
// the routes) on Caddy's admin server under /oauth_gateway/, over the
// token managers of the running configurations.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oauth_gateway",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

var admin = gateway.Admin{Managers: liveManagers, CredentialsPath: "/oauth_gateway/credentials/"}

// Routes implements caddy.AdminRouter.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oauth_gateway/credentials", Handler: apiHandler(admin.List)},
		{Pattern: "/oauth_gateway/credentials/", Handler: apiHandler(admin.Credential)},
		{Pattern: "/oauth_gateway/events", Handler: apiHandler(admin.Events)},
	}
}

// apiHandler turns the core's refusals into Caddy's admin API errors.
func apiHandler(h func(http.ResponseWriter, *http.Request) error) caddy.AdminHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		var he *gateway.HTTPError
		if errors.As(err, &he) {
			return caddy.APIError{HTTPStatus: he.Status, Err: he.Err}
		}
		return err
	}
}

// liveManagers returns every token manager of the running configs.
func liveManagers() []*tokenstore.Manager {
	var out []*tokenstore.Manager
	managers.Range(func(_, v any) bool {
		out = append(out, v.(managerHandle).m)
		return true
	})
	return out
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
