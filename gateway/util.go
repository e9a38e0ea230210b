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

// keepInjectedHeaders removes from the request's Connection header every
// name of a header the gateway injects (Authorization, DPoP). A proxy
// drops the headers its request's Connection header names (hop-by-hop,
// RFC 9110 §7.6.1), so a client's `Connection: Authorization` would strip
// the injected token upstream and drive a refresh on every request.
func keepInjectedHeaders(h http.Header) {
	var kept []string
	changed := false
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if strings.EqualFold(name, "Authorization") || strings.EqualFold(name, dpopHeader) {
				changed = true
				continue
			}
			if name != "" {
				kept = append(kept, name)
			}
		}
	}
	if !changed {
		return
	}
	if len(kept) == 0 {
		h.Del("Connection")
		return
	}
	h.Set("Connection", strings.Join(kept, ", "))
}
