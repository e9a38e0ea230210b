package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the gateway's admin endpoints on Caddy's admin server:
//
//	GET  /oauth_gateway/credentials                    redacted list
//	GET  /oauth_gateway/credentials/<id>               one credential
//	POST /oauth_gateway/credentials/<id>/refresh       obtain a new token now
//	POST /oauth_gateway/credentials/<id>/revoke        RFC 7009 revoke, then forget
//	PUT  /oauth_gateway/credentials/<id>/refresh_token {"refresh_token":"..."}: re-seed
//	GET  /oauth_gateway/events                         server-sent events of changes
//
// No response ever contains a token or secret.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oauth_gateway",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oauth_gateway/credentials", Handler: caddy.AdminHandlerFunc(a.handleList)},
		{Pattern: "/oauth_gateway/credentials/", Handler: caddy.AdminHandlerFunc(a.handleCredential)},
		{Pattern: "/oauth_gateway/events", Handler: caddy.AdminHandlerFunc(a.handleEvents)},
	}
}

// liveManagers returns every token manager of the running configs.
func liveManagers() []*tokenstore.Manager {
	var out []*tokenstore.Manager
	managers.Range(func(_, v any) bool {
		out = append(out, v.(managerHandle).m)
		return true
	})
	return out
}

func findCredentials(id string) []*tokenstore.Credential {
	var out []*tokenstore.Credential
	for _, m := range liveManagers() {
		for _, c := range m.Credentials() {
			if c.ID() == id {
				out = append(out, c)
			}
		}
	}
	return out
}

func (adminAPI) handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	list := []tokenstore.Status{}
	for _, m := range liveManagers() {
		for _, c := range m.Credentials() {
			list = append(list, c.Status())
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (adminAPI) handleCredential(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/oauth_gateway/credentials/")
	id, action, _ := strings.Cut(rest, "/")
	creds := findCredentials(id)
	if id == "" || len(creds) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no credential %q", id)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()

	switch {
	case action == "" && r.Method == http.MethodGet:
		return writeJSON(w, http.StatusOK, creds[0].Status())

	case action == "refresh" && r.Method == http.MethodPost:
		for _, c := range creds {
			if _, err := c.ForceRefresh(ctx); err != nil {
				return caddy.APIError{HTTPStatus: http.StatusBadGateway, Err: fmt.Errorf("refreshing: %v", err)}
			}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())

	case action == "revoke" && r.Method == http.MethodPost:
		var errs []error
		for _, c := range creds {
			errs = append(errs, c.Revoke(ctx))
		}
		if err := errors.Join(errs...); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadGateway, Err: fmt.Errorf("credential forgotten; revocation: %v", err)}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())

	case action == "refresh_token" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil || body.RefreshToken == "" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`body must be {"refresh_token":"..."}`)}
		}
		for _, c := range creds {
			if err := c.Replace(ctx, body.RefreshToken); err != nil {
				return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
			}
		}
		return writeJSON(w, http.StatusOK, creds[0].Status())
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("%s %s not supported", r.Method, r.URL.Path)}
}

// handleEvents streams credential changes as server-sent events, each a
// JSON tokenstore.Event with the credential's generation, starting with a
// snapshot of every credential.
func (adminAPI) handleEvents(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	var subs []<-chan tokenstore.Event
	for _, m := range liveManagers() {
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
	for _, m := range liveManagers() {
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

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
