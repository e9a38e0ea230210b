package fakeoauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Challenge styles for 401 responses.
const (
	// ChallengeMetadata: `WWW-Authenticate: Bearer resource_metadata="..."`.
	ChallengeMetadata = "metadata"
	// ChallengeBare: no WWW-Authenticate, a JSON-RPC error body (some MCP servers).
	ChallengeBare = "bare"
	// ChallengeBearer: `WWW-Authenticate: Bearer error="invalid_token"`.
	ChallengeBearer = "bearer"
)

// UpstreamOptions configure an Upstream.
type UpstreamOptions struct {
	// Addr to listen on (default 127.0.0.1:0).
	Addr string
	// AuthServer validates tokens. Its Issuer is advertised in the
	// protected resource metadata unless AdvertisedIssuer is set.
	AuthServer *AuthServer
	// ResourcePath is the resource's path (default "/mcp"); the resource
	// URL is the server's origin plus this path.
	ResourcePath string
	// Challenge is the 401 style (default ChallengeMetadata).
	Challenge string
	// RequiredScopes maps a path prefix to the scopes it needs (403
	// insufficient_scope otherwise).
	RequiredScopes map[string][]string
	// SlackErrors answers token failures with HTTP 200
	// {"ok":false,"error":"token_expired"} and missing scope with
	// {"ok":false,"error":"missing_scope","needed":"a,b"}.
	SlackErrors bool
	// MetadataResource overrides the `resource` claimed by the protected
	// resource metadata (to test RFC 9728 §3.3).
	MetadataResource string
	// DisableMetadata turns the metadata documents off.
	DisableMetadata bool
	// SSETimeout bounds how long /sse waits for ReleaseSSE (default 10s).
	SSETimeout time.Duration
}

// Upstream is a fake protected resource: an MCP server or API that wants
// bearer tokens from the AuthServer.
type Upstream struct {
	opts UpstreamOptions
	srv  *server

	mu               sync.Mutex
	advertisedIssuer string
	requests         int
	unauthorized     int
	forbidden        int
	lastAuth         string
	release          chan struct{}
	metadataFetches  int
}

// StartUpstream starts an Upstream on a loopback port.
func StartUpstream(opts UpstreamOptions) (*Upstream, error) {
	if opts.ResourcePath == "" {
		opts.ResourcePath = "/mcp"
	}
	if opts.Challenge == "" {
		opts.Challenge = ChallengeMetadata
	}
	if opts.SSETimeout <= 0 {
		opts.SSETimeout = 10 * time.Second
	}
	u := &Upstream{opts: opts, release: make(chan struct{})}
	if opts.AuthServer != nil {
		u.advertisedIssuer = opts.AuthServer.Issuer()
	}
	srv, err := startServer(opts.Addr, u)
	if err != nil {
		return nil, err
	}
	u.srv = srv
	return u, nil
}

// Close stops the server.
func (u *Upstream) Close() { u.srv.close() }

// URL is the server's origin.
func (u *Upstream) URL() string { return u.srv.URL }

// Resource is the protected resource's URL.
func (u *Upstream) Resource() string { return u.srv.URL + u.opts.ResourcePath }

// MetadataURL is the path-inserted RFC 9728 metadata URL.
func (u *Upstream) MetadataURL() string {
	return u.srv.URL + "/.well-known/oauth-protected-resource" + u.opts.ResourcePath
}

// AdvertiseIssuer changes the authorization server the metadata names
// (an upstream that later points elsewhere).
func (u *Upstream) AdvertiseIssuer(issuer string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.advertisedIssuer = issuer
}

// ReleaseSSE lets every waiting /sse stream finish.
func (u *Upstream) ReleaseSSE() {
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

// Counts returns requests served, 401s and 403s answered.
func (u *Upstream) Counts() (requests, unauthorized, forbidden int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests, u.unauthorized, u.forbidden
}

// MetadataFetches counts protected resource metadata requests.
func (u *Upstream) MetadataFetches() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.metadataFetches
}

// LastAuthorization is the last Authorization header received.
func (u *Upstream) LastAuthorization() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastAuth
}

// ServeHTTP implements http.Handler.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource") {
		u.serveMetadata(w, r)
		return
	}
	auth := r.Header.Get("Authorization")
	u.mu.Lock()
	u.requests++
	u.lastAuth = auth
	u.mu.Unlock()

	token, _ := strings.CutPrefix(auth, "Bearer ")
	scopes, ok := u.opts.AuthServer.Validate(token, u.Resource())
	if auth == "" || !ok {
		u.deny(w, http.StatusUnauthorized, "")
		return
	}
	for prefix, need := range u.opts.RequiredScopes {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			continue
		}
		for _, s := range need {
			if !slices.Contains(scopes, s) {
				u.deny(w, http.StatusForbidden, strings.Join(need, " "))
				return
			}
		}
	}

	switch {
	case strings.HasPrefix(r.URL.Path, "/sse"):
		u.serveSSE(w, r)
	case strings.HasPrefix(r.URL.Path, "/mcp") && r.Method == http.MethodPost:
		var req struct {
			ID any `json:"id"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{}})
	default: // /echo and anything else
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		w.Header().Set("Content-Type", "application/json")
		if u.opts.SlackErrors {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ok": true, "authorization": auth, "sha256": hex.EncodeToString(sum[:]), "length": len(body),
			"method": r.Method, "scopes": scopes,
		})
	}
}

// deny answers 401 or 403 in the configured style.
func (u *Upstream) deny(w http.ResponseWriter, status int, scope string) {
	u.mu.Lock()
	if status == http.StatusUnauthorized {
		u.unauthorized++
	} else {
		u.forbidden++
	}
	u.mu.Unlock()
	if u.opts.SlackErrors {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		body := map[string]any{"ok": false, "error": "token_expired"}
		if status == http.StatusForbidden {
			body = map[string]any{"ok": false, "error": "missing_scope", "needed": strings.ReplaceAll(scope, " ", ",")}
		}
		_ = json.NewEncoder(w).Encode(body)
		return
	}
	if status == http.StatusForbidden {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope="%s", resource_metadata="%s"`, scope, u.MetadataURL()))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"insufficient_scope"}`))
		return
	}
	switch u.opts.Challenge {
	case ChallengeMetadata:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", resource_metadata="%s"`, u.MetadataURL()))
	case ChallengeBearer:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Unauthorized"}}`))
}

func (u *Upstream) serveMetadata(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.metadataFetches++
	issuer := u.advertisedIssuer
	u.mu.Unlock()
	if u.opts.DisableMetadata || r.URL.Path != "/.well-known/oauth-protected-resource"+u.opts.ResourcePath {
		http.NotFound(w, r)
		return
	}
	resource := u.Resource()
	if u.opts.MetadataResource != "" {
		resource = u.opts.MetadataResource
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"resource":                 resource,
		"authorization_servers":    []string{issuer},
		"scopes_supported":         []string{"read", "write"},
		"bearer_methods_supported": []string{"header"},
	})
}

// serveSSE writes one event, flushes, waits for ReleaseSSE (or the
// timeout), then writes a final event.
func (u *Upstream) serveSSE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_, _ = fmt.Fprint(w, "event: message\ndata: {\"n\":1}\n\n")
	_ = rc.Flush()
	u.mu.Lock()
	release := u.release
	u.mu.Unlock()
	select {
	case <-release:
	case <-time.After(u.opts.SSETimeout):
	case <-r.Context().Done():
		return
	}
	_, _ = fmt.Fprint(w, "event: message\ndata: {\"n\":2}\n\n")
	_ = rc.Flush()
}
