package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// refreshWait bounds a background refresh after an unreplayable 401.
const refreshWait = 60 * time.Second

// oauthErrorBody is an RFC 6749 §5.2-shaped error for clients.
type oauthErrorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// respondTokenError tells the client, in RFC 6749 error form, that the
// gateway could not obtain a token. Descriptions are stable sentences
// naming the credential id: URLs, issuers and server text stay in the log
// (an attacker's metadata must not be reflected to clients). It never
// includes token values.
func (g *Gateway) respondTokenError(w http.ResponseWriter, r *http.Request, cred tokenSource, err error) error {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return nil // the client went away
	}
	if errors.Is(err, tokenstore.ErrNoSubjectToken) || errors.Is(err, tokenstore.ErrSubjectRejected) {
		return g.respondSubjectError(w, cred, err)
	}
	var throttled *exchangeThrottled
	if errors.As(err, &throttled) {
		return g.respondThrottled(w, cred, throttled)
	}
	id := cred.ID()
	status, retryAfter := http.StatusBadGateway, 0
	body := oauthErrorBody{Error: "server_error"}
	var untrusted *untrustedError
	var hinted *hintedError
	var cfg *configError
	switch {
	case errors.As(err, &untrusted):
		body.ErrorDescription = fmt.Sprintf("the gateway will not obtain a token for credential %s: %s", id, untrusted.kind)
	case errors.Is(err, tokenstore.ErrRevoked):
		body.Error = "invalid_grant"
		body.ErrorDescription = fmt.Sprintf("credential %s was revoked by an operator; an operator must provide a new refresh token", id)
	case errors.Is(err, tokenstore.ErrDead):
		body.Error = "invalid_grant"
		body.ErrorDescription = fmt.Sprintf("the authorization server rejected the gateway's credential %s (%s); an operator must provide a new refresh token or client credentials",
			id, clientReason(err))
	case errors.Is(err, tokenstore.ErrUnreadable):
		body.ErrorDescription = fmt.Sprintf("the gateway cannot read its stored credential %s; an operator must check encryption_key", id)
	case errors.As(err, &cfg):
		body.ErrorDescription = fmt.Sprintf("the gateway cannot request a token for credential %s: %s", id, cfg.hint)
	case errors.As(err, &hinted):
		body.ErrorDescription = fmt.Sprintf("the authorization server refused the gateway's token request for credential %s: %s", id, hinted.hint)
	case errors.Is(err, tokenstore.ErrConfiguration):
		body.ErrorDescription = fmt.Sprintf("the authorization server refused the gateway's token request for credential %s as configured (%s); %s",
			id, clientReason(err), configFix(err))
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		status, retryAfter = http.StatusServiceUnavailable, 5
		body.Error = "temporarily_unavailable"
		body.ErrorDescription = fmt.Sprintf("the gateway did not obtain an access token for credential %s within %s; it keeps trying, retry later",
			id, time.Duration(g.TokenWait))
	default:
		status, retryAfter = http.StatusServiceUnavailable, 5
		body.Error = "temporarily_unavailable"
		body.ErrorDescription = fmt.Sprintf("the gateway could not obtain an access token for credential %s right now (%s); retry later",
			id, clientReason(err))
	}
	level := zap.WarnLevel
	if status == http.StatusBadGateway {
		level = zap.ErrorLevel
	}
	g.logger.Log(level, "no token for request", zap.String("credential", id), zap.String("resource", g.Resource),
		zap.Int("status", status), zap.String("error", body.Error), zap.String("reason", serverCode(err, "")))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("Content-Length")
	if retryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(body)
}

// configFix says what to change for a token request the authorization
// server refused as configured.
func configFix(err error) string {
	var nf *notFoundError
	if errors.As(err, &nf) {
		return "an operator must set issuer or token_endpoint to the resource's authorization server (none publishes metadata where the configuration points)"
	}
	switch serverCode(err, "") {
	case "unsupported_grant_type":
		return "the server does not support the configured grant; an operator must change grant (or the server's settings)"
	case "unauthorized_client":
		return "the client may not use the configured grant; an operator must allow it for the client at the server or change grant"
	case "invalid_scope":
		return "the server refused the requested scopes; an operator must change scope (or max_scope)"
	case "invalid_target":
		return "the server refused the resource; an operator must check resource (or set resource_parameter off)"
	case "invalid_request":
		return "the server found the request malformed; an operator must check the configuration against the server's documentation"
	}
	return "an operator must change the configuration"
}

// clientReason is a bounded, stable reason for clients: a standard OAuth
// error code, or what failed. Server text never reaches clients.
func clientReason(err error) string {
	var oe *oauthclient.Error
	if errors.As(err, &oe) && oe.Err != nil {
		return outcomeOf(err)
	}
	if r := failureReason(err); r != "" {
		return r
	}
	var nf *notFoundError
	switch {
	case errors.Is(err, tokenstore.ErrBackoff):
		return "token endpoint failing, backing off"
	case errors.As(err, &nf):
		return "no authorization server metadata found"
	}
	return "server_error"
}

// serverCode is the authorization server's error code behind err, or def;
// with def "" and no code, the whole error (for logs only).
func serverCode(err error, def string) string {
	var oe *oauthclient.Error
	if errors.As(err, &oe) && oe.Err != nil && oe.Err.Code != "" {
		return oe.Err.Code
	}
	if r := failureReason(err); r != "" {
		return r
	}
	if def == "" && err != nil {
		return err.Error()
	}
	return def
}

// failureReason names a failure where no answer of the authorization
// server exists (unreachable, lock busy); "" otherwise.
func failureReason(err error) string {
	var te *oauthclient.TransportError
	switch {
	case errors.As(err, &te):
		return "token endpoint unreachable"
	case errors.Is(err, tokenstore.ErrLockTimeout):
		return "refresh lock busy"
	}
	return ""
}

// respondSubjectError: a request of an exchange grant without a subject
// token, or with one the server refused, is the client's to fix (401);
// the gateway's configuration is not at fault.
func (g *Gateway) respondSubjectError(w http.ResponseWriter, cred tokenSource, err error) error {
	desc := fmt.Sprintf("the request carries no subject token (%s); credential %s exchanges the user's token for an access token, so authenticate first",
		g.SubjectToken, cred.ID())
	if errors.Is(err, tokenstore.ErrSubjectRejected) {
		desc = fmt.Sprintf("the authorization server refused the request's subject token for credential %s (%s); obtain a new one", cred.ID(), clientReason(err))
	}
	g.logger.Info("request without a usable subject token", zap.String("credential", cred.ID()), zap.String("reason", serverCode(err, "")))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	w.WriteHeader(http.StatusUnauthorized)
	return json.NewEncoder(w).Encode(oauthErrorBody{Error: "invalid_token", ErrorDescription: desc})
}
