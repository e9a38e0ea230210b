package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Admin is the gateway's operator API over the credentials of the
// managers Managers returns (every running configuration's), as handlers
// that return an *HTTPError for a refused request:
//
//	GET  <prefix>/credentials                    redacted list
//	GET  <prefix>/credentials/<id>               one credential
//	POST <prefix>/credentials/<id>/refresh       obtain a new token now
//	POST <prefix>/credentials/<id>/revoke        RFC 7009 revoke at the pinned issuer, then forget;
//	                                             409 and no change without a revocation endpoint
//	POST <prefix>/credentials/<id>/revoke?forget=true   forget locally, revoke nothing
//	PUT  <prefix>/credentials/<id>/refresh_token {"refresh_token":"..."}: re-seed (keeps the pin)
//	POST <prefix>/credentials/<id>/authorize     start an operator's authorization of a shared credential
//	POST <prefix>/credentials/<id>/unpin         {"issuer":"https://..."}: bind to another issuer
//	GET  <prefix>/events                         server-sent events of changes
//
// No response ever contains a token or secret.
type Admin struct {
	// Managers returns the token managers whose credentials are served.
	Managers func() []*tokenstore.Manager
	// CredentialsPath is the path prefix of one credential's routes,
	// ending in "/" (Caddy: "/oauth_gateway/credentials/").
	CredentialsPath string
}

func (a Admin) findCredentials(id string) []*tokenstore.Credential {
	var out []*tokenstore.Credential
	for _, m := range a.Managers() {
		for _, c := range m.Credentials() {
			if c.ID() == id {
				out = append(out, c)
			}
		}
	}
	return out
}

// List answers the redacted list of every credential.
func (a Admin) List(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return &HTTPError{Status: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	list := []tokenstore.Status{}
	for _, m := range a.Managers() {
		for _, c := range m.Credentials() {
			list = append(list, c.Status())
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

// Credential answers one credential's routes.
func (a Admin) Credential(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, a.CredentialsPath)
	id, action, _ := strings.Cut(rest, "/")
	if hasControl(id) {
		return &HTTPError{Status: http.StatusBadRequest, Err: fmt.Errorf("credential id contains control characters")}
	}
	creds := a.findCredentials(id)
	if id == "" || len(creds) == 0 {
		return &HTTPError{Status: http.StatusNotFound, Err: fmt.Errorf("no credential %q", id)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()

	switch {
	case action == "" && r.Method == http.MethodGet:
		return writeJSON(w, http.StatusOK, creds[0].Status())

	case action == "refresh" && r.Method == http.MethodPost:
		for _, c := range creds {
			if _, err := c.ForceRefresh(ctx); err != nil {
				return &HTTPError{Status: http.StatusBadGateway, Err: fmt.Errorf("refreshing: %v", err)}
			}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())

	case action == "revoke" && r.Method == http.MethodPost:
		return revoke(ctx, w, r, creds)

	case action == "refresh_token" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := decodeAdminBody(r, &body); err != nil || body.RefreshToken == "" {
			return &HTTPError{Status: http.StatusBadRequest, Err: fmt.Errorf(`body must be {"refresh_token":"..."}`)}
		}
		if hasControl(body.RefreshToken) {
			return &HTTPError{Status: http.StatusBadRequest, Err: fmt.Errorf("refresh_token contains control characters")}
		}
		for _, c := range creds {
			if err := c.Replace(ctx, body.RefreshToken); err != nil {
				return &HTTPError{Status: http.StatusBadRequest, Err: err}
			}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())

	case action == "authorize" && r.Method == http.MethodPost:
		authURL, err := StartOperatorAuthorization(ctx, id)
		if errors.Is(err, ErrNoOperatorFlow) {
			return &HTTPError{Status: http.StatusConflict, Err: fmt.Errorf(
				"credential %s is not a shared authorization_code credential (per-user credentials are connected by their users)", id)}
		}
		if err != nil {
			return &HTTPError{Status: http.StatusBadGateway, Err: fmt.Errorf("starting the authorization: %v", err)}
		}
		return writeJSON(w, http.StatusOK, map[string]string{"id": id, "authorization_url": authURL})

	case action == "unpin" && r.Method == http.MethodPost:
		var body struct {
			Issuer string `json:"issuer"`
		}
		if err := decodeAdminBody(r, &body); err != nil || body.Issuer == "" {
			return &HTTPError{Status: http.StatusBadRequest, Err: fmt.Errorf(`body must be {"issuer":"https://..."}`)}
		}
		if hasControl(body.Issuer) || CheckURL("issuer", body.Issuer, true) != nil {
			return &HTTPError{Status: http.StatusBadRequest, Err: fmt.Errorf("issuer must be an absolute http(s) URL")}
		}
		for _, c := range creds {
			if err := c.Unpin(ctx, body.Issuer); err != nil {
				return &HTTPError{Status: http.StatusConflict, Err: err}
			}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())
	}
	return &HTTPError{Status: http.StatusMethodNotAllowed, Err: fmt.Errorf("%s %s not supported", r.Method, r.URL.Path)}
}

// Events streams credential changes as server-sent events, each a
// JSON tokenstore.Event with the credential's generation, starting with a
// snapshot of every credential.
func (a Admin) Events(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return &HTTPError{Status: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	var subs []<-chan tokenstore.Event
	for _, m := range a.Managers() {
		ch, stop := m.Subscribe()
		defer stop()
		subs = append(subs, ch)
	}
	merged := make(chan tokenstore.Event, 64)
	ctx := r.Context()
	for _, ch := range subs {
		go func() {
			for {
				select {
				case ev := <-ch:
					select {
					case merged <- ev:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event string, v any) error {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	for _, m := range a.Managers() {
		for _, c := range m.Credentials() {
			if err := send("snapshot", c.Status()); err != nil {
				return nil
			}
		}
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case ev := <-merged:
			if err := send("change", ev); err != nil {
				return nil
			}
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			_ = rc.Flush()
		case <-ctx.Done():
			return nil
		}
	}
}

// revoke revokes at the pinned issuer and forgets, or changes nothing;
// with ?forget=true it forgets locally without revoking.
func revoke(ctx context.Context, w http.ResponseWriter, r *http.Request, creds []*tokenstore.Credential) error {
	if r.URL.Query().Get("forget") == "true" {
		for _, c := range creds {
			if err := c.Forget(ctx); err != nil {
				return &HTTPError{Status: http.StatusBadGateway, Err: fmt.Errorf("forgetting: %v", err)}
			}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())
	}
	var result tokenstore.RevokeResult
	for _, c := range creds {
		res, err := c.Revoke(ctx)
		switch {
		case errors.Is(err, tokenstore.ErrNoRevocationEndpoint):
			return &HTTPError{Status: http.StatusConflict, Err: fmt.Errorf(
				"nothing was revoked or changed: %v. Set revocation_endpoint, or POST .../revoke?forget=true to drop the credential locally without revoking it", err)}
		case err != nil:
			return &HTTPError{Status: http.StatusBadGateway, Err: fmt.Errorf("nothing was changed: revocation failed: %v", err)}
		}
		result = res
	}
	return writeJSON(w, http.StatusOK, struct {
		tokenstore.Status
		Revocation tokenstore.RevokeResult `json:"revocation"`
	}{creds[0].Status(), result})
}

// decodeAdminBody reads a small JSON body.
func decodeAdminBody(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(v)
}

// hasControl reports control characters (CR, LF, NUL, ...), refused in
// admin input so nothing an operator pastes can split a log line or a
// header.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
