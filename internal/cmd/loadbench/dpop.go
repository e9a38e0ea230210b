package main

import (
	"fmt"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// dpopSite is a gateway site with DPoP-bound tokens (issue 10): every
// request carries a fresh ES256 proof, so its ratio against the plain
// site shows what a proof costs per request.
func dpopSite(port int, upstream string, as *fakeoauth.AuthServer) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	oauth_gateway {
		resource http://%s/
		token_endpoint %s
		client_id bench
		client_secret bench-secret
		dpop
		insecure_allow_http
	}
	reverse_proxy %s
}
`, port, upstream, as.TokenURL(), upstream)
}
