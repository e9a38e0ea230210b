package discovery

import (
	"slices"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
)

// ResourceMetadataURLs returns every resource_metadata URL the challenges
// carry, under any scheme (RFC 9728 §5.1), de-duplicated, in order.
func ResourceMetadataURLs(chs []challenge.Challenge) []string {
	var out []string
	for _, c := range chs {
		for _, u := range c.Params["resource_metadata"] {
			if u != "" && !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// ChallengeScope returns the scope of the first Bearer or DPoP challenge
// that names one.
func ChallengeScope(chs []challenge.Challenge) string {
	for _, c := range chs {
		if (c.Scheme == "bearer" || c.Scheme == "dpop") && c.Param("scope") != "" {
			return c.Param("scope")
		}
	}
	return ""
}
