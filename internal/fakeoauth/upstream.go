package fakeoauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Challenge styles for the Upstream's 401 responses.
const (
	// ChallengeMetadata: `WWW-Authenticate: Bearer error="invalid_token",
	// resource_metadata="..."` (RFC 9728 §5.1, what MCP servers should send).
	ChallengeMetadata = "metadata"
	// ChallengeBearer: `WWW-Authenticate: Bearer error="invalid_token"`.
	ChallengeBearer = "bearer"
	// ChallengeBare: no WWW-Authenticate at all and a JSON-RPC error
	// body, as some MCP servers answer.
	ChallengeBare = "bare"
)

// UpstreamOptions configure an Upstream. Zero values are the defaults.
type UpstreamOptions struct {
	// Addr is where StartUpstream listens (default 127.0.0.1:0).
	Addr string
	// AuthServer validates the bearer tokens (required). Its issuer is
	// the one the protected resource metadata names, unless
	// AdvertisedIssuer is set.
	AuthServer *AuthServer
	// ResourcePath is the resource's path (default "/mcp"); the resource
	// URL is the server's origin plus this path. Tokens requested for
	// another resource (RFC 8707) are refused.
	ResourcePath string

	// ResourceID is the resource identifier tokens must be bound to and
	// the metadata claims (default: origin plus ResourcePath), for a
	// resource known by a public name while served on loopback.
	ResourceID string

	// ScopesSupported is the metadata's scopes_supported (default read
	// write).
	ScopesSupported []string
	// AdvertisedIssuer makes the metadata name another authorization
	// server (AdvertiseIssuer changes it later).
	AdvertisedIssuer string
	// MetadataResource overrides the `resource` the metadata claims (to
	// test the RFC 9728 §3.3 check).
	MetadataResource string
	// DisableMetadata answers 404 at every metadata URL.
	DisableMetadata bool
	// MetadataAtRoot serves the document at the root well-known URL
	// (claiming the origin as resource) instead of the path-inserted one.
	MetadataAtRoot bool
	// ChallengeMetadataURL replaces the resource_metadata URL the
	// challenges carry (a URL on another host, a private address).
	ChallengeMetadataURL string

	// Challenge is the 401 style (default ChallengeMetadata).
	Challenge string
	// RequiredScopes maps a path prefix to the scopes it needs; a token
	// without them gets 403 with `Bearer error="insufficient_scope",
	// scope="a b"`. The longest matching prefix wins.
	RequiredScopes map[string][]string
	// SlackErrors answers like the Slack API: HTTP 200 with
	// {"ok":false,"error":"token_expired"} (or "invalid_auth" without a
	// token) instead of 401, and {"ok":false,"error":"missing_scope",
	// "needed":"a,b"} instead of 403.
	SlackErrors bool

	// DPoPNonce makes requests with a DPoP-bound token whose proof lacks
	// the upstream's current nonce fail with 401 and a `DPoP
	// error="use_dpop_nonce"` challenge carrying DPoP-Nonce.
	DPoPNonce bool

	// SSETimeout bounds how long /sse waits for ReleaseSSE (default 10s).
	SSETimeout time.Duration
}

// Upstream is a fake protected resource, an MCP server or API wanting
// bearer tokens from an AuthServer. Endpoints:
//
//	/echo  any method: JSON with the Authorization seen, body sha256 and
//	       length, the token's scopes and subject (the user, "" for
//	       client_credentials)
//	/mcp   JSON-RPC over POST: {"jsonrpc":"2.0","id":<id>,"result":{}}
//	/sse   text/event-stream: one event, then waits for ReleaseSSE
//	/.well-known/oauth-protected-resource{path}  RFC 9728 metadata
//
// Any other path answers like /echo.
type Upstream struct {
	opts UpstreamOptions
	srv  *server

	mu               sync.Mutex
	origin           string
	advertisedIssuer string
	movedTo          *AuthServer
	metadataResource string
	requests         int
	unauthorized     int
	forbidden        int
	metadataFetches  int
	lastAuth         string
	lastAuthByPath   map[string]string
	sse              sseGate
	dpop             dpopState // proofs with DPoP-bound tokens
}

// NewUpstream returns an Upstream to serve yourself; call SetOrigin with
// its address before use.
func NewUpstream(opts UpstreamOptions) *Upstream {
	if opts.ResourcePath == "" {
		opts.ResourcePath = "/mcp"
	}
	if opts.Challenge == "" {
		opts.Challenge = ChallengeMetadata
	}
	if opts.SSETimeout <= 0 {
		opts.SSETimeout = 10 * time.Second
	}
	u := &Upstream{opts: opts, lastAuthByPath: map[string]string{}, sse: newSSEGate()}
	u.advertisedIssuer = opts.AdvertisedIssuer
	return u
}

// StartUpstream starts an Upstream on opts.Addr (default a free loopback
// port). Close stops it.
func StartUpstream(opts UpstreamOptions) (*Upstream, error) {
	u := NewUpstream(opts)
	srv, err := startServer(opts.Addr, u)
	if err != nil {
		return nil, err
	}
	u.srv = srv
	u.SetOrigin(srv.URL)
	return u, nil
}

// SetOrigin sets the scheme://host:port the server is reachable at.
func (u *Upstream) SetOrigin(origin string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.origin = strings.TrimSuffix(origin, "/")
}

// Close stops the listener started by StartUpstream and releases any
// waiting SSE stream.
func (u *Upstream) Close() {
	u.ReleaseSSE()
	if u.srv != nil {
		u.srv.close()
	}
}

// URL is the server's origin.
func (u *Upstream) URL() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.origin
}

// Resource is the protected resource's identifier: ResourceID, or the
// origin plus ResourcePath.
func (u *Upstream) Resource() string {
	if u.opts.ResourceID != "" {
		return u.opts.ResourceID
	}
	return u.URL() + u.opts.ResourcePath
}

// MetadataURL is the URL the metadata document is served at: the
// path-inserted RFC 9728 URL, or the root one with MetadataAtRoot.
func (u *Upstream) MetadataURL() string {
	if u.opts.MetadataAtRoot {
		return u.URL() + wellKnownPR
	}
	return u.URL() + wellKnownPR + u.opts.ResourcePath
}

// Counts returns requests served (metadata excluded), 401s and 403s
// answered (Slack-style 200 errors included).
func (u *Upstream) Counts() (requests, unauthorized, forbidden int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests, u.unauthorized, u.forbidden
}

// LastAuthorization is the last Authorization header received.
func (u *Upstream) LastAuthorization() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastAuth
}

// LastAuthorizationFor is the last Authorization header received on path.
func (u *Upstream) LastAuthorizationFor(path string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastAuthByPath[path]
}

// MoveTo makes as the upstream's authorization server: its metadata names
// it and only its tokens are accepted (a resource migrated to another
// authorization server, MCP SEP-2352).
func (u *Upstream) MoveTo(as *AuthServer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.movedTo = as
	u.advertisedIssuer = as.Issuer()
}

// validator is the authorization server whose tokens are accepted.
func (u *Upstream) validator() *AuthServer {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.movedTo != nil {
		return u.movedTo
	}
	return u.opts.AuthServer
}

// ServeHTTP implements http.Handler.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, wellKnownPR) {
		u.serveMetadata(w, r)
		return
	}
	auth := r.Header.Get("Authorization")
	u.mu.Lock()
	u.requests++
	u.lastAuth = auth
	u.lastAuthByPath[r.URL.Path] = auth
	u.mu.Unlock()

	scheme, token := cutAuthorization(auth)
	if token == "" {
		u.deny(w, http.StatusUnauthorized, "", false)
		return
	}
	as := u.validator()
	scopes, ok := as.ValidateFor(token, u.Resource())
	if !ok {
		u.deny(w, http.StatusUnauthorized, "", true)
		return
	}
	// RFC 9449 §7: a bound token needs the DPoP scheme and a proof.
	if !u.checkDPoP(w, r, scheme, token) {
		return
	}
	if need := u.requiredScopes(r.URL.Path); !containsAll(scopes, need) {
		u.deny(w, http.StatusForbidden, strings.Join(need, " "), true)
		return
	}

	switch {
	case r.URL.Path == "/sse" || strings.HasPrefix(r.URL.Path, "/sse/"):
		u.serveSSE(w, r)
	case r.URL.Path == "/mcp" || strings.HasPrefix(r.URL.Path, "/mcp/"):
		serveJSONRPC(w, r)
	default:
		serveEcho(w, r, auth, scopes, as.SubjectOf(token))
	}
}

func (u *Upstream) requiredScopes(path string) []string {
	best := ""
	var need []string
	for prefix, s := range u.opts.RequiredScopes {
		if strings.HasPrefix(path, prefix) && len(prefix) >= len(best) {
			best, need = prefix, s
		}
	}
	return need
}

func containsAll(have, need []string) bool {
	for _, s := range need {
		if !slices.Contains(have, s) {
			return false
		}
	}
	return true
}

// echoReply is what /echo answers.
type echoReply struct {
	OK            bool     `json:"ok"`
	Method        string   `json:"method"`
	Path          string   `json:"path"`
	Authorization string   `json:"authorization"`
	SHA256        string   `json:"sha256"`
	Length        int      `json:"length"`
	Scopes        []string `json:"scopes"`
	// Subject is the user the token was issued for ("" for
	// client_credentials tokens).
	Subject string `json:"subject"`
	// Headers are the names of the request's headers, sorted, so tests
	// can check what was (not) forwarded.
	Headers []string `json:"headers"`
}

func serveEcho(w http.ResponseWriter, r *http.Request, auth string, scopes []string, subject string) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	writeJSON(w, http.StatusOK, echoReply{
		OK: true, Method: r.Method, Path: r.URL.Path, Authorization: auth,
		SHA256: hex.EncodeToString(h.Sum(nil)), Length: int(n), Scopes: scopes, Subject: subject,
		Headers: slices.Sorted(maps.Keys(r.Header)),
	})
}

// serveJSONRPC answers every JSON-RPC request with an empty result, and
// notifications (no id) with 202 as MCP's streamable HTTP transport does.
func serveJSONRPC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST JSON-RPC here", http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{"code": -32700, "message": "parse error"}})
		return
	}
	if len(req.ID) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{}})
}
