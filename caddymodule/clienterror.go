package caddymodule

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

// refreshWait bounds how long a request waits for a token.
const refreshWait = 60 * time.Second

// oauthErrorBody is an RFC 6749 §5.2-shaped error for clients.
type oauthErrorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// respondTokenError tells the client, in RFC 6749 error form, that the
// gateway could not obtain a token. It never includes token values.
func (h *Handler) respondTokenError(w http.ResponseWriter, r *http.Request, err error) error {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return nil // the client went away
	}
	status := http.StatusServiceUnavailable
	body := oauthErrorBody{
		Error: "temporarily_unavailable",
		ErrorDescription: fmt.Sprintf("the gateway could not obtain an access token for %s right now (%s); retry later",
			h.Resource, serverCode(err, "server_error")),
	}
	retryAfter := 5
	var untrusted *untrustedError
	if errors.As(err, &untrusted) {
		status = http.StatusBadGateway
		body = oauthErrorBody{
			Error:            "server_error",
			ErrorDescription: fmt.Sprintf("the gateway will not obtain a token for %s: %s", h.Resource, untrusted.msg),
		}
		retryAfter = 0
	} else if errors.Is(err, tokenstore.ErrDead) {
		status = http.StatusBadGateway
		body = oauthErrorBody{
			Error: "invalid_grant",
			ErrorDescription: fmt.Sprintf("the authorization server rejected the gateway's credential for %s (%s); an operator must provide a new refresh token or client credentials",
				h.Resource, serverCode(err, "invalid_grant")),
		}
		retryAfter = 0
	}
	h.logger.Warn("no token for request", zap.String("credential", h.cred.ID()),
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

// serverCode is the authorization server's error code behind err, or def.
func serverCode(err error, def string) string {
	var oe *oauthclient.Error
	if errors.As(err, &oe) && oe.Err != nil && oe.Err.Code != "" {
		return oe.Err.Code
	}
	var te *oauthclient.TransportError
	if errors.As(err, &te) {
		return "token endpoint unreachable"
	}
	if errors.Is(err, tokenstore.ErrLockTimeout) {
		return "refresh lock busy"
	}
	if def == "" && err != nil {
		return err.Error()
	}
	return def
}
