package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// callback completes a flow: the state must be known, unused, unexpired
// and started by the same user; the response's iss must be the issuer the
// flow went to (RFC 9207); then the code is exchanged (PKCE) and the
// tokens stored for that user.
func (f *authFlow) callback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return page(w, http.StatusMethodNotAllowed, "Method not allowed", "")
	}
	resp, err := oauthclient.ParseAuthorizationResponse(r.URL.Query())
	if err != nil || resp.State == "" {
		return page(w, http.StatusBadRequest, "Invalid authorization response", "The response carries no usable state.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	pending, err := f.manager.TakePending(ctx, resp.State)
	switch {
	case errors.Is(err, tokenstore.ErrPendingExpired):
		return page(w, http.StatusBadRequest, "This authorization expired", "Start again from the application.")
	case errors.Is(err, tokenstore.ErrPendingUnknown):
		return page(w, http.StatusBadRequest, "Unknown or already used authorization", "This link was used already or never started here. Start again from the application.")
	case err != nil:
		f.logger.Error("reading the authorization state", zap.Error(err))
		return page(w, http.StatusServiceUnavailable, "Try again", "The gateway could not read the authorization state.")
	}
	if !f.owns(pending) {
		// Another handler's flow (one redirect URI can reach several
		// handlers, and a state names no handler by itself): give it back
		// untouched, so its own callback still completes it, and bind
		// nothing here.
		if err := f.manager.SavePending(ctx, resp.State, pending); err != nil {
			f.logger.Warn("could not give back another handler's authorization state", zap.Error(err))
		}
		f.logger.Warn("authorization callback for another handler's flow; refused",
			zap.String("credential", pending.CredentialID), zap.String("redirect_uri", pending.RedirectURI))
		return page(w, http.StatusBadRequest, "This authorization belongs to another application",
			"It was started for another resource behind this gateway. Nothing was connected here.")
	}
	if !pending.Operator && f.perUser() && f.principalOf(r) != pending.Principal {
		// Login CSRF or account mix-up: someone else's browser finishing
		// this user's flow (or the reverse). Bind nothing.
		f.logger.Warn("authorization callback from another user than the one who started it; refused",
			zap.String("credential", pending.CredentialID))
		return page(w, http.StatusForbidden, "This authorization belongs to someone else",
			"It was started by another user. Nothing was connected. Start again from your own session.")
	}
	if err := f.req.trust.authorizationResponse(resp, pending); err != nil {
		f.logger.Warn("authorization response from an unexpected issuer; refused (RFC 9207)", zap.String("expected", pending.Issuer),
			zap.String("got", resp.Issuer), zap.String("credential", pending.CredentialID))
		return page(w, http.StatusBadRequest, "Authorization server mismatch",
			"The response did not come from the authorization server the flow started with. Nothing was connected.")
	}
	if resp.Error != "" {
		f.logger.Warn("authorization refused", zap.String("error", resp.Error), zap.String("credential", pending.CredentialID))
		return page(w, http.StatusBadRequest, "The authorization was not granted",
			fmt.Sprintf("The authorization server answered %q: %s", resp.Error, resp.ErrorDescription))
	}
	cred := f.credential(pending.Principal)
	// A flow begun before the credential was bound must not complete
	// against another server than the one it is bound to now.
	bound, err := cred.BoundIssuer(ctx)
	if err != nil {
		f.logger.Error("reading the credential's authorization server binding", zap.String("credential", cred.ID()), zap.Error(err))
		return page(w, http.StatusServiceUnavailable, "Try again", "The gateway could not read the credential.")
	}
	if err := f.req.trust.completion(bound, pending); err != nil {
		f.logger.Warn("authorization from another authorization server than the credential is bound to; refused",
			zap.String("credential", cred.ID()), zap.Error(err))
		return page(w, http.StatusBadRequest, "Authorization server mismatch",
			"This account is connected through another authorization server. Nothing was changed.")
	}
	res, err := f.req.exchange(ctx, pending, resp.Code)
	if err != nil {
		f.logger.Error("exchanging the authorization code failed", zap.String("credential", cred.ID()), zap.Error(err))
		return page(w, http.StatusBadGateway, "The authorization server refused the code", publicFlowError(err))
	}
	if err := cred.Authorized(ctx, res, pending.Issuer, pending.Scopes); errors.Is(err, tokenstore.ErrIssuerBound) {
		f.logger.Warn("authorization not stored: the credential is bound to another authorization server", zap.String("credential", cred.ID()), zap.Error(err))
		return page(w, http.StatusBadRequest, "Authorization server mismatch",
			"This account is connected through another authorization server. Nothing was changed.")
	} else if err != nil {
		f.logger.Error("storing the authorization failed", zap.String("credential", cred.ID()), zap.Error(err))
		return page(w, http.StatusServiceUnavailable, "Try again", "The gateway could not store the authorization.")
	}
	f.logger.Info("account connected", zap.String("credential", cred.ID()), zap.Bool("operator", pending.Operator))
	if pending.ReturnTo != "" {
		http.Redirect(w, r, pending.ReturnTo, http.StatusFound)
		return nil
	}
	return page(w, http.StatusOK, "Connected", fmt.Sprintf("The gateway can now reach %s for you. You can close this page.", f.spec.Resource))
}

// owns reports whether a pending authorization was begun by this flow:
// the same credential (handler identity, principal and front) and the same
// redirect URI.
func (f *authFlow) owns(p *tokenstore.PendingAuthorization) bool {
	if p.RedirectURI != f.redirectURI {
		return false
	}
	if !f.perUser() {
		return f.g.cred != nil && p.CredentialID == f.g.cred.ID()
	}
	spec := f.spec
	spec.Principal = p.Principal
	return p.Principal != "" && p.CredentialID == spec.ID()
}

// disconnect (POST) revokes and forgets the caller's own credential.
func (f *authFlow) disconnect(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return page(w, http.StatusMethodNotAllowed, "Method not allowed", "Disconnect with a POST request.")
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != f.origin {
		// A cross-site form must not disconnect a signed-in user (CSRF).
		return page(w, http.StatusForbidden, "Refused", "Disconnect from the gateway's own pages.")
	}
	principal := f.principalOf(r)
	if !f.perUser() || principal == "" {
		return page(w, http.StatusForbidden, "Nothing to disconnect", "Only per-user credentials can be disconnected by their user.")
	}
	cred := f.credential(principal)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if _, err := cred.Revoke(ctx); err != nil {
		f.logger.Warn("disconnect: revocation failed; forgetting the tokens anyway", zap.String("credential", cred.ID()), zap.Error(err))
		if err := cred.Forget(ctx); err != nil {
			return page(w, http.StatusServiceUnavailable, "Try again", "The gateway could not forget the credential.")
		}
	}
	return page(w, http.StatusOK, "Disconnected", "The gateway no longer holds tokens for your account.")
}

// serveClientMetadata serves the Client ID Metadata Document whose URL is
// the client_id.
func (f *authFlow) serveClientMetadata(w http.ResponseWriter, r *http.Request) error {
	doc := oauthclient.ClientMetadata{
		ClientID:                f.cimdURL,
		ClientName:              "Caddy OAuth gateway",
		RedirectURIs:            []string{f.redirectURI},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: oauthclient.AuthNone,
		ApplicationType:         oauthclient.ApplicationTypeFor([]string{f.redirectURI}),
	}
	if f.g.jwks != nil && f.g.JWKSURI != "" {
		// A signing key: the server verifies private_key_jwt against it.
		doc.TokenEndpointAuthMethod, doc.JWKSURI = oauthclient.AuthPrivateKeyJWT, f.g.JWKSURI
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	return json.NewEncoder(w).Encode(doc)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p id="message">{{.Message}}</p></body></html>
`))

// page answers a browser with a small HTML page (everything escaped).
func page(w http.ResponseWriter, status int, title, message string) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Del("Content-Length")
	w.WriteHeader(status)
	return pageTemplate.Execute(w, struct{ Title, Message string }{title, strings.TrimSpace(message)})
}
