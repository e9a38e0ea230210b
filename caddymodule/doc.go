// Package caddymodule adapts the gateway to Caddy: the oauth_gateway and
// oauth_normalize HTTP handlers, the oauth_gateway app (global option) and
// their Caddyfile syntax.
package caddymodule
