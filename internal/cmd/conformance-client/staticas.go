package main

import (
	"encoding/json"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// staticAS is a minimal authorization server for scenarios whose MCP
// server has no OAuth: RFC 8414 metadata and a client_credentials token
// endpoint. The gateway is configured with it as `issuer`, so it injects
// a token (which such a server ignores) and never fetches the MCP
// server's well-known URLs: the scenario sees only MCP traffic, passed
// through the gateway. (With OAUTHGW_CONFORMANCE_PLAIN=discovery the
// gateway instead discovers from the MCP server, finds nothing and
// forwards without a token.)
type staticAS struct {
	srv    *http.Server
	origin string
	secret string
	issued atomic.Int64
}

func startStaticAS() (*staticAS, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	as := &staticAS{origin: "http://" + l.Addr().String(), secret: randomHex(16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                as.origin,
			"token_endpoint":                        as.origin + "/token",
			"grant_types_supported":                 []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
			"response_types_supported":              []string{"token"},
		})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != staticClientID || secret != as.secret {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		if r.PostFormValue("grant_type") != "client_credentials" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
			return
		}
		n := as.issued.Add(1)
		log.Printf("static authorization server: token %d issued to the gateway", n)
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": "conformance-static-" + randomHex(12),
			"token_type":   "Bearer",
			"expires_in":   3600,
		})
	})
	as.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = as.srv.Serve(l) }()
	return as, nil
}

const staticClientID = "conformance-gateway"

func (as *staticAS) close() {
	if as != nil {
		_ = as.srv.Close()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
