package fakeoauth

import "net/http"

// serveRevoke is the RFC 7009 revocation endpoint. Revoking a refresh
// token revokes its family (§2.1 allows it, and most servers do);
// revoking an access token removes it. Unknown tokens answer 200 (§2.2).
func (a *AuthServer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	a.refreshJWKS(r.Context(), r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if auth := a.authenticate(r); auth.code != "" {
		writeJSON(w, auth.status, map[string]string{"error": auth.code, "error_description": auth.desc})
		return
	}
	tok := r.PostForm.Get("token")
	a.revoked = append(a.revoked, r.PostForm.Get("token_type_hint"))
	if rt := a.tokens.refresh[tok]; rt != nil {
		a.tokens.revoked[rt.family] = true
	}
	delete(a.tokens.access, tok)
	w.WriteHeader(http.StatusOK)
}
