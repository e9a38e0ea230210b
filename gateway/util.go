package gateway

import (
	"mime"
	"net/http"
	"strings"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
)

// isJSON reports whether a Content-Type is JSON (application/json or +json).
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// hasBearerChallenge reports whether the response already carries a
// Bearer (or DPoP) challenge.
func hasBearerChallenge(h http.Header) bool {
	for _, c := range challenge.Parse(h.Values("WWW-Authenticate")) {
		if c.Scheme == "bearer" || c.Scheme == "dpop" {
			return true
		}
	}
	return false
}
