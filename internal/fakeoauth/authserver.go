package fakeoauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// AuthServerOptions configure an AuthServer. Zero values are the defaults.
type AuthServerOptions struct {
	// Addr to listen on (default 127.0.0.1:0).
	Addr string
	// IssuerPath makes the issuer path-bearing ("/tenant1"); the token
	// endpoint lives under it.
	IssuerPath string
	// AccessTTL is the access tokens' lifetime (default 1h).
	AccessTTL time.Duration
	// OmitExpiresIn leaves expires_in out of token responses (Salesforce).
	OmitExpiresIn bool
	// Rotate issues a new refresh token on every refresh; the old one is
	// spent.
	Rotate bool
	// RevokeFamilyOnReuse: presenting a spent refresh token revokes the
	// whole family, access tokens included (RFC 9700 §4.14.2).
	RevokeFamilyOnReuse bool
	// SlackErrors answers token errors with HTTP 200
	// {"ok":false,"error":"invalid_refresh_token"} like Slack.
	SlackErrors bool
	// DisableOAuthMetadata and DisableOIDCMetadata turn off the RFC 8414
	// and OpenID discovery documents (to force a fallback).
	DisableOAuthMetadata bool
	DisableOIDCMetadata  bool
	// MetadataIssuer overrides the issuer the metadata claims (to test
	// the RFC 8414 §3.3 check).
	MetadataIssuer string
	// Latency delays every token response.
	Latency time.Duration
}

// AuthServer is a fake OAuth 2.0 authorization server.
type AuthServer struct {
	opts AuthServerOptions
	srv  *server

	mu         sync.Mutex
	clients    map[string]*client
	access     map[string]*accessToken
	refresh    map[string]*refreshToken
	revoked    map[string]bool // families
	failures   []failure
	counts     map[string]int // token requests by grant
	reuse      int
	metadata   int
	log        []TokenRequestLog
	revocation []string // hints of revocations received
	issued     []string // every token ever issued, for log scans
}

type client struct {
	secret string
	scopes []string
}

type accessToken struct {
	client   string
	scopes   []string
	resource string
	expires  time.Time
	family   string
}

type refreshToken struct {
	client string
	scopes []string
	family string
	spent  bool
}

type failure struct {
	status      int
	body        string
	contentType string
	header      http.Header
}

// TokenRequestLog is what the server saw of one token request (no secrets).
type TokenRequestLog struct {
	Grant      string
	ClientID   string
	AuthMethod string // client_secret_basic or client_secret_post
	Scope      string
	Resource   string
	Accept     string
	Status     int
}

// StartAuthServer starts an AuthServer on a loopback port.
func StartAuthServer(opts AuthServerOptions) (*AuthServer, error) {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = time.Hour
	}
	a := &AuthServer{
		opts:    opts,
		clients: map[string]*client{},
		access:  map[string]*accessToken{},
		refresh: map[string]*refreshToken{},
		revoked: map[string]bool{},
		counts:  map[string]int{},
	}
	srv, err := startServer(opts.Addr, a)
	if err != nil {
		return nil, err
	}
	a.srv = srv
	return a, nil
}

// Close stops the server.
func (a *AuthServer) Close() { a.srv.close() }

// URL is the server's origin (http://127.0.0.1:port).
func (a *AuthServer) URL() string { return a.srv.URL }

// Issuer is the issuer identifier (origin plus IssuerPath).
func (a *AuthServer) Issuer() string { return a.srv.URL + a.opts.IssuerPath }

// TokenURL is the token endpoint.
func (a *AuthServer) TokenURL() string { return a.Issuer() + "/token" }

// RevocationURL is the RFC 7009 revocation endpoint.
func (a *AuthServer) RevocationURL() string { return a.Issuer() + "/revoke" }

// AddClient registers a confidential client allowed the given scopes
// (none listed: any scope).
func (a *AuthServer) AddClient(id, secret string, scopes ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clients[id] = &client{secret: secret, scopes: scopes}
}

// IssueRefreshToken starts a refresh token family for clientID, as a
// completed authorization would.
func (a *AuthServer) IssueRefreshToken(clientID string, scopes []string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	rt := "rt_" + randomString()
	a.refresh[rt] = &refreshToken{client: clientID, scopes: scopes, family: randomString()}
	a.issued = append(a.issued, rt)
	return rt
}

// Validate reports whether token is a live access token for resource
// ("" matches any) and returns its scopes.
func (a *AuthServer) Validate(token, resource string) ([]string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.access[token]
	if !ok || time.Now().After(at.expires) || a.revoked[at.family] {
		return nil, false
	}
	if resource != "" && at.resource != "" && at.resource != resource {
		return nil, false
	}
	return at.scopes, true
}

// InvalidateAccessTokens makes every access token issued so far invalid.
func (a *AuthServer) InvalidateAccessTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.access = map[string]*accessToken{}
}

// RevokeAll revokes every refresh token family (their refresh attempts
// then get invalid_grant).
func (a *AuthServer) RevokeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rt := range a.refresh {
		a.revoked[rt.family] = true
	}
	a.access = map[string]*accessToken{}
}

// FailNext makes the next n token requests fail with status, body and
// content type (and extra headers such as Retry-After).
func (a *AuthServer) FailNext(n, status int, body, contentType string, header http.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i < n; i++ {
		a.failures = append(a.failures, failure{status, body, contentType, header})
	}
}

// TokenRequests returns how many token requests used grant ("" for all).
func (a *AuthServer) TokenRequests(grant string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if grant != "" {
		return a.counts[grant]
	}
	n := 0
	for _, c := range a.counts {
		n += c
	}
	return n
}

// ReuseDetections counts spent refresh tokens presented again.
func (a *AuthServer) ReuseDetections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reuse
}

// MetadataFetches counts metadata document requests.
func (a *AuthServer) MetadataFetches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metadata
}

// Requests returns the token request log.
func (a *AuthServer) Requests() []TokenRequestLog {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.log)
}

// IssuedSecrets returns every access and refresh token issued so far;
// tests scan logs for them.
func (a *AuthServer) IssuedSecrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.issued)
}

// Revocations returns the token_type_hint of each revocation received.
func (a *AuthServer) Revocations() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.revocation)
}

// ServeHTTP implements http.Handler.
func (a *AuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := a.opts.IssuerPath
	switch r.URL.Path {
	case p + "/token":
		a.serveToken(w, r)
	case p + "/revoke":
		a.serveRevoke(w, r)
	case "/.well-known/oauth-authorization-server" + p:
		a.serveMetadata(w, a.opts.DisableOAuthMetadata)
	case "/.well-known/openid-configuration" + p, p + "/.well-known/openid-configuration":
		a.serveMetadata(w, a.opts.DisableOIDCMetadata)
	default:
		// An SPA-style catch-all: HTML with 200, which discovery must
		// treat as a miss.
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!doctype html><title>app</title>"))
	}
}

func (a *AuthServer) serveMetadata(w http.ResponseWriter, disabled bool) {
	a.mu.Lock()
	a.metadata++
	a.mu.Unlock()
	if disabled {
		http.NotFound(w, nil)
		return
	}
	issuer := a.Issuer()
	if a.opts.MetadataIssuer != "" {
		issuer = a.opts.MetadataIssuer
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=3600")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                issuer,
		"token_endpoint":                        a.TokenURL(),
		"revocation_endpoint":                   a.RevocationURL(),
		"authorization_endpoint":                a.Issuer() + "/authorize",
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"grant_types_supported":                 []string{"client_credentials", "refresh_token", "authorization_code"},
		"scopes_supported":                      []string{"read", "write", "admin"},
		"response_types_supported":              []string{"code"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

// authenticate checks client_secret_basic (id and secret form-encoded
// before base64, RFC 6749 §2.3.1) or client_secret_post.
func (a *AuthServer) authenticate(r *http.Request) (id, method string, ok bool) {
	var secret string
	if u, p, has := r.BasicAuth(); has {
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return "", "", false
		}
		method = "client_secret_basic"
	} else {
		id, secret, method = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), "client_secret_post"
	}
	c, known := a.clients[id]
	return id, method, known && c.secret == secret
}

func (a *AuthServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if a.opts.Latency > 0 {
		time.Sleep(a.opts.Latency)
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		a.oauthError(w, r, http.StatusBadRequest, "invalid_request", "POST a form")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()

	grant := r.PostForm.Get("grant_type")
	a.counts[grant]++
	entry := TokenRequestLog{Grant: grant, Scope: r.PostForm.Get("scope"), Resource: r.PostForm.Get("resource"), Accept: r.Header.Get("Accept")}
	record := func(status int) { entry.Status = status; a.log = append(a.log, entry) }

	if len(a.failures) > 0 {
		f := a.failures[0]
		a.failures = a.failures[1:]
		for k, v := range f.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", f.contentType)
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(f.body))
		record(f.status)
		return
	}

	id, method, ok := a.authenticate(r)
	entry.ClientID, entry.AuthMethod = id, method
	if !ok {
		record(http.StatusUnauthorized)
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		a.oauthError(w, r, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	requested := strings.Fields(r.PostForm.Get("scope"))
	var scopes []string
	family := ""
	switch grant {
	case "client_credentials":
		if allowed := a.clients[id].scopes; len(allowed) > 0 {
			for _, s := range requested {
				if !slices.Contains(allowed, s) {
					record(http.StatusBadRequest)
					a.oauthError(w, r, http.StatusBadRequest, "invalid_scope", "scope "+s+" is not allowed for this client")
					return
				}
			}
		}
		scopes = requested
	case "refresh_token":
		rt := a.refresh[r.PostForm.Get("refresh_token")]
		switch {
		case rt == nil || rt.client != id || a.revoked[rt.family]:
			record(http.StatusBadRequest)
			a.oauthError(w, r, http.StatusBadRequest, "invalid_grant", "refresh token is invalid or revoked")
			return
		case rt.spent:
			a.reuse++
			if a.opts.RevokeFamilyOnReuse {
				a.revoked[rt.family] = true
			}
			record(http.StatusBadRequest)
			a.oauthError(w, r, http.StatusBadRequest, "invalid_grant", "refresh token was already used")
			return
		}
		// A refresh cannot widen scope (RFC 6749 §6).
		for _, s := range requested {
			if !slices.Contains(rt.scopes, s) {
				record(http.StatusBadRequest)
				a.oauthError(w, r, http.StatusBadRequest, "invalid_scope", "a refresh cannot add scope "+s)
				return
			}
		}
		scopes = rt.scopes
		if len(requested) > 0 {
			scopes = requested
		}
		family = rt.family
		if a.opts.Rotate {
			rt.spent = true
		}
	default:
		record(http.StatusBadRequest)
		a.oauthError(w, r, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}

	at := "at_" + randomString()
	a.issued = append(a.issued, at)
	a.access[at] = &accessToken{client: id, scopes: scopes, resource: entry.Resource, expires: time.Now().Add(a.opts.AccessTTL), family: family}
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "scope": strings.Join(scopes, " ")}
	if !a.opts.OmitExpiresIn {
		resp["expires_in"] = int(a.opts.AccessTTL / time.Second)
	}
	if grant == "refresh_token" && a.opts.Rotate {
		next := "rt_" + randomString()
		a.issued = append(a.issued, next)
		a.refresh[next] = &refreshToken{client: id, scopes: a.refresh[r.PostForm.Get("refresh_token")].scopes, family: family}
		resp["refresh_token"] = next
	}
	record(http.StatusOK)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

func (a *AuthServer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		a.oauthError(w, r, http.StatusBadRequest, "invalid_request", "")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, _, ok := a.authenticate(r); !ok {
		a.oauthError(w, r, http.StatusUnauthorized, "invalid_client", "")
		return
	}
	tok := r.PostForm.Get("token")
	a.revocation = append(a.revocation, r.PostForm.Get("token_type_hint"))
	if rt := a.refresh[tok]; rt != nil {
		a.revoked[rt.family] = true
	}
	delete(a.access, tok)
	w.WriteHeader(http.StatusOK)
}

// oauthError writes an RFC 6749 §5.2 error, or Slack's shape, or (when
// the client did not ask for JSON) GitHub's form-encoded shape.
func (a *AuthServer) oauthError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	if a.opts.SlackErrors {
		vendor := code
		if code == "invalid_grant" {
			vendor = "invalid_refresh_token"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": vendor})
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "json") {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		w.WriteHeader(http.StatusOK) // GitHub answers errors with 200
		_, _ = fmt.Fprintf(w, "error=%s&error_description=%s", url.QueryEscape(code), url.QueryEscape(desc))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
