package fakeoauth

import (
	"net/http"
	"slices"
)

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
	tokenMethods := slices.Clone(a.opts.AuthMethods)
	if !slices.Contains(tokenMethods, methodNone) {
		tokenMethods = append(tokenMethods, methodNone) // public clients
	}
	doc := map[string]any{
		"issuer":                                     issuer,
		"token_endpoint":                             a.TokenURL(),
		"revocation_endpoint":                        a.RevocationURL(),
		"authorization_endpoint":                     a.AuthorizeURL(),
		"token_endpoint_auth_methods_supported":      tokenMethods,
		"revocation_endpoint_auth_methods_supported": a.opts.AuthMethods,
		"grant_types_supported":                      []string{"client_credentials", "refresh_token", "authorization_code"},
		"scopes_supported":                           a.opts.ScopesSupported,
		"response_types_supported":                   []string{"code"},
		"code_challenge_methods_supported":           []string{"S256"},
		// RFC 9207: authorization responses carry iss.
		"authorization_response_iss_parameter_supported": true,
	}
	if slices.Contains(a.opts.AuthMethods, methodPrivateKeyJWT) || slices.Contains(a.opts.AuthMethods, methodSecretJWT) {
		doc["token_endpoint_auth_signing_alg_values_supported"] = signingAlgs
		doc["revocation_endpoint_auth_signing_alg_values_supported"] = signingAlgs
	}
	a.mu.Lock()
	if !a.issAdvertised {
		delete(doc, "authorization_response_iss_parameter_supported")
	}
	a.mu.Unlock()
	if a.opts.NoS256 {
		delete(doc, "code_challenge_methods_supported")
	}
	if a.opts.Registration {
		doc["registration_endpoint"] = a.RegistrationURL()
	}
	if a.opts.CIMD {
		doc["client_id_metadata_document_supported"] = true
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	writeJSON(w, http.StatusOK, doc)
}
