package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
)

// MCP's URL-mode elicitation (2025-11-25): a request that cannot proceed
// until the user visits a URL answers JSON-RPC error -32042 with
// data.elicitations. Revisions before it had no such answer; their
// clients get an error whose message carries the URL.
const (
	codeURLElicitationRequired = -32042
	codeAuthorizationRequired  = -32001 // older MCP revisions: an implementation-defined server error
	firstElicitationRevision   = "2025-11-25"
	maxJSONRPCPeek             = 64 << 10
)

// respondNeedsAuthorization answers a request whose credential holds no
// usable token yet: a browser is sent into the flow (and back), an MCP
// client gets a URL elicitation, anything else a 401 JSON naming the URL.
// A shared credential offers no client-facing URL: only an operator may
// bind an upstream account to everyone's credential.
func (g *Gateway) respondNeedsAuthorization(w http.ResponseWriter, r *http.Request, scopes ...string) error {
	f := g.flow
	authURL, msg := "", ""
	if f.perUser() {
		authURL = f.startURL("", scopes...)
		msg = fmt.Sprintf("Authorization required: open %s to connect your account for %s, then retry.", authURL, f.spec.Resource)
	} else {
		msg = fmt.Sprintf("Authorization required: an operator must connect the gateway's shared account for %s with `caddy oauth-gateway authorize %s`.",
			f.spec.Resource, g.cred.ID())
	}
	gatewayMetrics.authorizationRequired.Inc()
	g.logger.Debug("credential needs authorization", zap.Bool("per_user", f.perUser()), zap.String("resource", f.spec.Resource))

	if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
		if f.perUser() {
			http.Redirect(w, r, f.startURL(safeReturnTo(r.URL.RequestURI()), scopes...), http.StatusFound)
			return nil
		}
		return page(w, http.StatusUnauthorized, "Not connected yet", msg)
	}
	if id, ok := jsonRPCRequestID(r); ok {
		return respondJSONRPCElicitation(w, r, id, authURL, msg)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusUnauthorized)
	return json.NewEncoder(w).Encode(struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		AuthorizationURL string `json:"authorization_url,omitempty"`
	}{"authorization_required", msg, authURL})
}

// jsonRPCRequestID reads a JSON-RPC request's id from a small JSON POST
// body (put back for nobody: the request is answered here). ok is false
// for anything that is not a JSON-RPC request with an id.
func jsonRPCRequestID(r *http.Request) (json.RawMessage, bool) {
	if r.Method != http.MethodPost || !isJSON(r.Header.Get("Content-Type")) || r.Body == nil {
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONRPCPeek))
	if err != nil {
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  string          `json:"method"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.JSONRPC != "2.0" || msg.Method == "" || len(msg.ID) == 0 || string(msg.ID) == "null" {
		return nil, false
	}
	return msg.ID, true
}

// respondJSONRPCElicitation answers in the form the client's protocol
// revision (MCP-Protocol-Version) defines. The message itself always
// carries the URL, for clients that only print it.
func respondJSONRPCElicitation(w http.ResponseWriter, r *http.Request, id json.RawMessage, authURL, msg string) error {
	type elicitation struct {
		Mode          string `json:"mode"`
		ElicitationID string `json:"elicitationId"`
		URL           string `json:"url"`
		Message       string `json:"message"`
	}
	rpcErr := map[string]any{"code": codeAuthorizationRequired, "message": msg}
	version := r.Header.Get("MCP-Protocol-Version")
	if authURL != "" && (version == "" || version >= firstElicitationRevision) {
		eid, _ := oauthclient.NewState()
		rpcErr["code"] = codeURLElicitationRequired
		rpcErr["data"] = map[string]any{"elicitations": []elicitation{{Mode: "url", ElicitationID: eid, URL: authURL, Message: msg}}}
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": id, "error": rpcErr})
}
