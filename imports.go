// Package oauthgateway is the root of the Caddy OAuth gateway module.
//
// Importing it registers every Caddy module this project provides, so that
// `xcaddy build --with github.com/oauthgw/caddy-oauth-gateway` produces a
// Caddy with the gateway built in.
package oauthgateway

import (
	// Registers the oauth_gateway handler, app and oauth_normalize handler.
	_ "github.com/oauthgw/caddy-oauth-gateway/caddymodule"
)
