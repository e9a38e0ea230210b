package fakeoauth

import "net/http"

// serveMetadata answers RFC 8414 and OpenID Connect discovery. Every
// fetch is counted so tests can prove the gateway caches metadata.
func (a *AuthServer) serveMetadata(w http.ResponseWriter, r *http.Request, disabled bool) {
	a.mu.Lock()
	a.metadata[r.URL.Path]++
	a.mu.Unlock()
	if disabled {
		http.NotFound(w, r)
		return
	}
	issuer := a.Issuer()
	if a.opts.MetadataIssuer != "" {
		issuer = a.opts.MetadataIssuer
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                     issuer,
		"token_endpoint":                             a.TokenURL(),
		"revocation_endpoint":                        a.RevocationURL(),
		"authorization_endpoint":                     a.Issuer() + "/authorize",
		"token_endpoint_auth_methods_supported":      a.opts.AuthMethods,
		"revocation_endpoint_auth_methods_supported": a.opts.AuthMethods,
		"grant_types_supported":                      []string{"client_credentials", "refresh_token", "authorization_code"},
		"scopes_supported":                           a.opts.ScopesSupported,
		"response_types_supported":                   []string{"code"},
		"code_challenge_methods_supported":           []string{"S256"},
	})
}
