package fakeoauth

import (
	"github.com/go-jose/go-jose/v4"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// AuthServerOptions configure an AuthServer. Zero values are the defaults.
// The options are fixed once the server is created; the few behaviours a
// test needs to change midway have methods (FailNext, SetLatency, ...).
type AuthServerOptions struct {
	// Addr is where StartAuthServer listens (default 127.0.0.1:0, a free
	// port). NewAuthServer ignores it.
	Addr string
	// IssuerPath makes the issuer path-bearing ("/tenant1"). The token and
	// revocation endpoints live under it, and the metadata is served at
	// the path-inserted RFC 8414 URL and both OIDC locations.
	IssuerPath string
	// AccessTTL is the access tokens' lifetime, sent as expires_in
	// (default 1h).
	AccessTTL time.Duration
	// OmitExpiresIn leaves expires_in out of token responses, as
	// Salesforce does; the token still expires after AccessTTL.
	OmitExpiresIn bool

	// Rotate issues a new refresh token on every refresh and spends the
	// presented one. Without it the refresh token stays valid and token
	// responses carry none (RFC 6749 §6: the client keeps the old one).
	Rotate bool
	// RevokeFamilyOnReuse makes a spent refresh token, presented again,
	// revoke its whole family including the family's access tokens, as
	// Auth0 and Keycloak do (RFC 9700 §4.14.2). Reuse is counted either way.
	RevokeFamilyOnReuse bool
	// ReuseGrace accepts a spent refresh token presented again within
	// this long of its first use, as Okta (up to 60 s) and Atlassian
	// (10 min) do, so a client that lost the first answer can recover:
	// it gets a new pair in the same family. Counted in GraceReuses, not
	// ReuseDetections. Zero: strict rotation (Keycloak, Auth0 by default).
	ReuseGrace time.Duration

	// AuthMethods are the client authentication methods accepted and
	// advertised in token_endpoint_auth_methods_supported (default
	// client_secret_basic and client_secret_post). private_key_jwt and
	// client_secret_jwt (RFC 7523 §2.2, see AddKeyClient and
	// AddSecretJWTClient) may be listed; a client using a method not
	// listed gets invalid_client. Public clients (none) are always accepted.
	AuthMethods []string
	// JWKSCacheTTL is how long a key client's JWKS fetched from its URL
	// is reused (default 5s); negative refetches it for every assertion.
	JWKSCacheTTL time.Duration
	// JWTBearerKeys are the keys of the issuer whose JWTs the jwt-bearer
	// grant (RFC 7523 §2.1) accepts, e.g. a cluster's service-account
	// token signer.
	JWTBearerKeys jose.JSONWebKeySet
	// TrustedIDJAGIssuers maps the issuer of each trusted enterprise IdP
	// to its JWKS URL: its ID-JAGs are accepted as jwt-bearer assertions
	// and its JWTs as token-exchange subject tokens (see TrustIDJAG).
	TrustedIDJAGIssuers map[string]string
	// TokenExchangeAudiences are the aud values, besides the issuer, that
	// a token-exchange subject JWT may carry (an ID token's client id).
	TokenExchangeAudiences []string
	// RequireApplicationType refuses a dynamic registration without
	// application_type, as MCP 2026-07-28 servers may (SEP-837).
	RequireApplicationType bool
	// ScopesSupported is advertised in the metadata (default read write admin).
	ScopesSupported []string
	// RejectResource answers a token request carrying both an RFC 8707
	// `resource` and a `scope` with 400 invalid_request and an
	// AADSTS901002 description, as Microsoft Entra ID v2 endpoints do.
	RejectResource bool

	// SlackErrors answers token errors with HTTP 200
	// {"ok":false,"error":"invalid_refresh_token"} (Slack's codes) and
	// adds "ok":true to successes.
	SlackErrors bool
	// GitHubStyle answers token errors with HTTP 200 and GitHub's codes
	// (bad_refresh_token, incorrect_client_credentials), and when the
	// request's Accept does not name application/json, answers
	// form-encoded (errors and successes), as GitHub does.
	GitHubStyle bool

	// DisableOAuthMetadata and DisableOIDCMetadata answer 404 at the
	// RFC 8414 and OpenID Connect discovery URLs (to force a fallback).
	DisableOAuthMetadata bool
	DisableOIDCMetadata  bool
	// MetadataIssuer overrides the issuer the metadata claims (to test
	// the RFC 8414 §3.3 identity check).
	MetadataIssuer string

	// Latency delays every token response (to widen race windows).
	Latency time.Duration

	// Users are the accounts the login page offers, one button each
	// (default alice and bob).
	Users []string
	// NoS256 stops advertising code_challenge_methods_supported and
	// accepts authorization requests with a plain or no code_challenge.
	NoS256 bool
	// CodeTTL is the authorization codes' lifetime (default 60s).
	CodeTTL time.Duration
	// WrongIss sends this iss in authorization responses instead of the
	// issuer; OmitIss sends none (to test the RFC 9207 check).
	WrongIss string
	OmitIss  bool
	// Registration serves RFC 7591 dynamic client registration at
	// <issuer>/register and advertises it.
	Registration bool
	// RegistrationSecretTTL, when positive, makes registered client
	// secrets expire (client_secret_expires_at) after it.
	RegistrationSecretTTL time.Duration
	// CIMD accepts http(s) URL client_ids as Client ID Metadata
	// Documents, fetched from that URL, and advertises it.
	CIMD bool

	// DPoPNonce makes token requests carrying a DPoP proof (RFC 9449)
	// without the server's current nonce fail with 400 use_dpop_nonce
	// and a DPoP-Nonce header (see RotateDPoPNonce).
	DPoPNonce bool
	// DPoPAnswerBearer issues plain Bearer tokens, unbound, even to
	// requests with a valid DPoP proof, as some servers do.
	DPoPAnswerBearer bool

	// OnTokenRequest, when set, is called after each token request with
	// what was logged (no secrets). It runs after the grant took effect
	// and before the answer is written, so a hook that blocks holds the
	// answer back. It runs outside the server's lock and may call its
	// methods.
	OnTokenRequest func(TokenRequestLog)
}

// AuthServer is a fake OAuth 2.0 authorization server: RFC 8414 and OIDC
// metadata, an authorization endpoint with a login and consent page, a
// token endpoint (client_credentials, refresh_token, authorization_code
// with PKCE), an RFC 7009 revocation endpoint, and optionally RFC 7591
// registration and Client ID Metadata Documents. It is an http.Handler; StartAuthServer
// also gives it a listener.
type AuthServer struct {
	opts AuthServerOptions
	srv  *server // nil when the caller serves the handler itself

	mu       sync.Mutex
	origin   string
	latency  time.Duration
	clients  map[string]*client
	tokens   tokenTable
	failures []failure
	counts   map[string]int // token requests by grant_type
	reuse    int
	grace    int            // spent refresh tokens accepted again within ReuseGrace
	metadata map[string]int // metadata fetches by path
	log      []TokenRequestLog
	// bearerLog records jwt-bearer grants.
	bearerLog []BearerAssertion
	revoked   []string // token_type_hint of each revocation received

	codes         map[string]*authCode
	authz         []AuthorizationLog
	registrations int
	// sendIss, responseIss and issAdvertised: RFC 9207 behaviour
	// (SetResponseIss; from WrongIss and OmitIss at start).
	sendIss       bool
	responseIss   string
	issAdvertised bool
	// applicationTypes records each registration's application_type.
	applicationTypes []string
	cimdFetches      int

	assertions []AssertionRecord
	jtis       map[string]bool // client_id NUL jti of accepted assertions

	idjag *idjagState // trusted IdPs, ID-JAG jtis, token exchange (idjag.go)
	dpop  dpopState   // DPoP proofs at the token endpoint
}

// TokenRequestLog is what the server saw of one token request. It holds
// no secret, so a test may print it.
type TokenRequestLog struct {
	Time       time.Time
	Grant      string // grant_type
	ClientID   string
	AuthMethod string // client_secret_basic, client_secret_post, private_key_jwt, client_secret_jwt, none (public client) or "" (failed)
	Scope      string // the scope parameter as sent
	Resource   string // the RFC 8707 resource parameter as sent
	Accept     string // the Accept header
	Status     int    // HTTP status answered
	Error      string // the standard error code answered, "" on success
	Injected   bool   // the answer came from FailNext
	DPoPKey    string // jkt of the request's accepted DPoP proof, "" without one
	// RefreshToken is the refresh_token parameter as sent ("" without
	// one), so tests can tell which refresh token reached the server.
	RefreshToken string
}

// NewAuthServer returns an AuthServer to serve yourself (httptest, a mux).
// Call SetOrigin with the address it is reachable at before use: the
// issuer and endpoint URLs are built from it.
func NewAuthServer(opts AuthServerOptions) *AuthServer {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = time.Hour
	}
	if len(opts.AuthMethods) == 0 {
		opts.AuthMethods = []string{methodBasic, methodPost}
	}
	if len(opts.ScopesSupported) == 0 {
		opts.ScopesSupported = []string{"read", "write", "admin"}
	}
	if len(opts.Users) == 0 {
		opts.Users = []string{"alice", "bob"}
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = time.Minute
	}
	opts.IssuerPath = strings.TrimSuffix(opts.IssuerPath, "/")
	if opts.IssuerPath != "" && !strings.HasPrefix(opts.IssuerPath, "/") {
		opts.IssuerPath = "/" + opts.IssuerPath
	}
	return &AuthServer{
		opts:     opts,
		latency:  opts.Latency,
		clients:  map[string]*client{},
		tokens:   newTokenTable(),
		counts:   map[string]int{},
		metadata: map[string]int{},
		codes:    map[string]*authCode{},

		sendIss: !opts.OmitIss, responseIss: opts.WrongIss, issAdvertised: true,
	}
}

// StartAuthServer starts an AuthServer on opts.Addr (default a free
// loopback port). Close stops it.
func StartAuthServer(opts AuthServerOptions) (*AuthServer, error) {
	a := NewAuthServer(opts)
	srv, err := startServer(opts.Addr, a)
	if err != nil {
		return nil, err
	}
	a.srv = srv
	a.SetOrigin(srv.URL)
	return a, nil
}

// SetOrigin sets the scheme://host:port the server is reachable at.
func (a *AuthServer) SetOrigin(origin string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.origin = strings.TrimSuffix(origin, "/")
}

// Close stops the listener started by StartAuthServer (a no-op otherwise).
func (a *AuthServer) Close() {
	if a.srv != nil {
		a.srv.close()
	}
}

// URL is the server's origin (http://127.0.0.1:port).
func (a *AuthServer) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.origin
}

// Issuer is the issuer identifier: the origin plus IssuerPath.
func (a *AuthServer) Issuer() string { return a.URL() + a.opts.IssuerPath }

// TokenURL is the token endpoint.
func (a *AuthServer) TokenURL() string { return a.Issuer() + "/token" }

// RevocationURL is the RFC 7009 revocation endpoint.
func (a *AuthServer) RevocationURL() string { return a.Issuer() + "/revoke" }

// OAuthMetadataURL is the RFC 8414 URL (path-inserted for a path-bearing issuer).
func (a *AuthServer) OAuthMetadataURL() string {
	return a.URL() + "/.well-known/oauth-authorization-server" + a.opts.IssuerPath
}

// OIDCMetadataURL is the OpenID Connect discovery URL, path-appended as
// OIDC Discovery §4 defines it (the path-inserted form is served too).
func (a *AuthServer) OIDCMetadataURL() string {
	return a.Issuer() + "/.well-known/openid-configuration"
}

// AddClient registers a confidential client. A client with scopes listed
// may only obtain those (others: 400 invalid_scope); none listed: any.
func (a *AuthServer) AddClient(id, secret string, scopes ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &client{secret: secret, scopes: slices.Clone(scopes)}
	if old := a.clients[id]; old != nil {
		c.redirectURIs = old.redirectURIs
	}
	a.clients[id] = c
}

// SetLatency changes the delay before every token response.
func (a *AuthServer) SetLatency(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.latency = d
}

// ServeHTTP implements http.Handler.
func (a *AuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := a.opts.IssuerPath
	switch r.URL.Path {
	case p + "/token":
		a.serveToken(w, r)
	case p + "/revoke":
		a.serveRevoke(w, r)
	case p + "/authorize":
		a.serveAuthorize(w, r)
	case p + "/authorize/decide":
		a.serveDecide(w, r)
	case p + "/register":
		if !a.opts.Registration {
			http.NotFound(w, r)
			return
		}
		a.serveRegister(w, r)
	case "/.well-known/oauth-authorization-server" + p:
		a.serveMetadata(w, r, a.opts.DisableOAuthMetadata)
	case "/.well-known/openid-configuration" + p, p + "/.well-known/openid-configuration":
		a.serveMetadata(w, r, a.opts.DisableOIDCMetadata)
	default:
		// An SPA-style catch-all: HTML with 200, which discovery must
		// treat as a miss, never as a document.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>app</title><div id=root></div>"))
	}
}

// TokenRequests returns how many token requests used grant ("" for all),
// injected failures included.
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

// GraceReuses counts spent refresh tokens accepted again within
// ReuseGrace.
func (a *AuthServer) GraceReuses() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grace
}

// MetadataFetches counts requests to the metadata URLs, 404s from
// disabled documents included.
func (a *AuthServer) MetadataFetches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.metadata {
		n += c
	}
	return n
}

// MetadataFetchesAt counts requests to one metadata path
// ("/.well-known/openid-configuration/tenant1").
func (a *AuthServer) MetadataFetchesAt(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metadata[path]
}

// Requests returns the token request log, oldest first.
func (a *AuthServer) Requests() []TokenRequestLog {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.log)
}

// Revocations returns the token_type_hint of each revocation received.
func (a *AuthServer) Revocations() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.revoked)
}
