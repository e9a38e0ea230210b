package fakeoauth

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// RegistrationURL is the RFC 7591 registration endpoint (served with
// the Registration option).
func (a *AuthServer) RegistrationURL() string { return a.Issuer() + "/register" }

// Registrations counts successful dynamic client registrations.
func (a *AuthServer) Registrations() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.registrations
}

// registrationRequest is the RFC 7591 §2 client metadata understood.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Scope                   string   `json:"scope"`
	ApplicationType         string   `json:"application_type"`
}

// ApplicationTypes are the application_type values of the registrations
// received, in order ("" where a request left it out).
func (a *AuthServer) ApplicationTypes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.applicationTypes)
}

// serveRegister is RFC 7591 dynamic client registration: public clients
// (token_endpoint_auth_method none) get no secret, others one.
func (a *AuthServer) serveRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	var m registrationRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&m); err != nil {
		registrationError(w, "invalid_client_metadata", "the body must be a JSON object")
		return
	}
	if len(m.RedirectURIs) == 0 {
		registrationError(w, "invalid_redirect_uri", "redirect_uris is required")
		return
	}
	a.mu.Lock()
	a.applicationTypes = append(a.applicationTypes, m.ApplicationType)
	a.mu.Unlock()
	switch {
	case m.ApplicationType == "" && a.opts.RequireApplicationType:
		registrationError(w, "invalid_client_metadata", "application_type is required (MCP 2026-07-28, SEP-837)")
		return
	case m.ApplicationType != "" && m.ApplicationType != "web" && m.ApplicationType != "native":
		registrationError(w, "invalid_client_metadata", "application_type must be web or native")
		return
	}
	for _, u := range m.RedirectURIs {
		if !absoluteURL(u) {
			registrationError(w, "invalid_redirect_uri", "redirect_uri "+u+" is not an absolute URL without fragment")
			return
		}
	}
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = methodBasic // RFC 7591 §2 default
	}
	if !slices.Contains([]string{methodNone, methodBasic, methodPost}, m.TokenEndpointAuthMethod) {
		registrationError(w, "invalid_client_metadata", "token_endpoint_auth_method "+m.TokenEndpointAuthMethod+" is not supported")
		return
	}
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{"authorization_code"}
	}
	for _, g := range m.GrantTypes {
		if !slices.Contains([]string{"authorization_code", "refresh_token", "client_credentials"}, g) {
			registrationError(w, "invalid_client_metadata", "grant_type "+g+" is not supported")
			return
		}
	}
	if len(m.ResponseTypes) == 0 {
		m.ResponseTypes = []string{"code"}
	}
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			registrationError(w, "invalid_client_metadata", "response_type "+rt+" is not supported")
			return
		}
	}

	now := time.Now()
	id := "dyn_" + randomString()
	c := &client{public: m.TokenEndpointAuthMethod == methodNone, redirectURIs: slices.Clone(m.RedirectURIs), name: m.ClientName}
	reply := map[string]any{
		"client_id":                  id,
		"client_id_issued_at":        now.Unix(),
		"redirect_uris":              m.RedirectURIs,
		"token_endpoint_auth_method": m.TokenEndpointAuthMethod,
		"grant_types":                m.GrantTypes,
		"response_types":             m.ResponseTypes,
	}
	if m.ClientName != "" {
		reply["client_name"] = m.ClientName
	}
	if m.Scope != "" {
		reply["scope"] = m.Scope
	}
	a.mu.Lock()
	if !c.public {
		c.secret = "sec_" + randomString()
		a.tokens.issued = append(a.tokens.issued, c.secret) // a secret for log scans
		reply["client_secret"] = c.secret
		reply["client_secret_expires_at"] = 0
		if ttl := a.opts.RegistrationSecretTTL; ttl > 0 {
			c.secretExpires = now.Add(ttl)
			reply["client_secret_expires_at"] = c.secretExpires.Unix()
		}
	}
	a.clients[id] = c
	a.registrations++
	a.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, reply)
}

func registrationError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}
