package fakeoauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Token exchange identifiers (RFC 8693, PROTOCOL.md §11).
const (
	// GrantTokenExchange is the RFC 8693 §2.1 grant type.
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeIDToken is the subject_token_type of an OpenID Connect ID token.
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
	// TokenTypeJWT is the subject_token_type of a JWT of no more specific type.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
	// TokenTypeAccessToken is the token type of an OAuth access token.
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeRefreshToken is the token type of an OAuth refresh token.
	TokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
	// TokenTypeIDJAG is the requested and issued token type of an
	// Identity Assertion JWT Authorization Grant.
	TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"
	// IDJAGType is the JWS typ header of an ID-JAG.
	IDJAGType = "oauth-id-jag+jwt"
)

// maxIDJAGTTL is the longest ID-JAG the IdP issues: it is a one-shot
// grant, so it lives minutes, never as long as the ID token.
const maxIDJAGTTL = 5 * time.Minute

// IdPOptions configure an IdP. Zero values are the defaults.
type IdPOptions struct {
	// Addr is where StartIdP listens (default a free loopback port).
	Addr string
	// ClientID is the aud of the ID tokens IDToken mints: the client the
	// user signed in to (default "gateway"). The token exchange accepts
	// an ID token only from the client it was issued to.
	ClientID string
	// ResourceClientID is the client_id claim of ID-JAGs: the client's
	// identifier at the resource's authorization server (default the
	// client_id that authenticated at the IdP).
	ResourceClientID string
	// IDJAGTTL is the ID-JAGs' lifetime (default and maximum 5 minutes).
	IDJAGTTL time.Duration
}

// IdPExchange is one ID-JAG the IdP issued. It holds no token.
type IdPExchange struct {
	Client   string // the client that authenticated
	Subject  string // the user (sub of the ID token and of the ID-JAG)
	Audience string // the audience parameter: the resource's authorization server
	Resource string // the resource parameter, "" when absent
}

// IdP is a fake enterprise identity provider for MCP enterprise-managed
// authorization: it signs ID tokens (IDToken) with its own ES256 key,
// serves that key as a JWKS, and exchanges an ID token for an ID-JAG at
// its token endpoint (RFC 8693, requested_token_type id-jag), which the
// resource's AuthServer accepts as a jwt-bearer grant once it trusts
// this issuer (TrustIDJAG).
type IdP struct {
	opts IdPOptions
	srv  *server
	key  *ecdsa.PrivateKey
	kid  string

	mu        sync.Mutex
	clients   map[string]string // id -> secret
	exchanges []IdPExchange
}

// StartIdP starts an IdP on opts.Addr. Close stops it.
func StartIdP(opts IdPOptions) (*IdP, error) {
	if opts.ClientID == "" {
		opts.ClientID = "gateway"
	}
	if opts.IDJAGTTL <= 0 || opts.IDJAGTTL > maxIDJAGTTL {
		opts.IDJAGTTL = maxIDJAGTTL
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	p := &IdP{opts: opts, key: key, kid: randomString()[:8], clients: map[string]string{}}
	srv, err := startServer(opts.Addr, p)
	if err != nil {
		return nil, err
	}
	p.srv = srv
	return p, nil
}

// Close stops the IdP.
func (p *IdP) Close() { p.srv.close() }

// Issuer is the IdP's issuer identifier (its origin).
func (p *IdP) Issuer() string { return p.srv.URL }

// TokenURL is the token endpoint, which does token exchange only.
func (p *IdP) TokenURL() string { return p.srv.URL + "/token" }

// JWKSURL serves the public key that signs ID tokens and ID-JAGs.
func (p *IdP) JWKSURL() string { return p.srv.URL + "/jwks" }

// AddClient registers a confidential client (client_secret_basic or
// client_secret_post).
func (p *IdP) AddClient(id, secret string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[id] = secret
}

// Exchanges lists the ID-JAGs issued, oldest first; refusals are not listed.
func (p *IdP) Exchanges() []IdPExchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.exchanges)
}

// IDToken mints an ID token for user, as the IdP would after a login:
// iss = Issuer(), sub = user, aud = IdPOptions.ClientID, iat, exp (after
// ttl, which may be negative for an expired token) and a fresh jti.
func (p *IdP) IDToken(user string, ttl time.Duration) string {
	now := time.Now()
	s, err := p.sign("JWT", jwt.Claims{
		Issuer: p.Issuer(), Subject: user, Audience: jwt.Audience{p.opts.ClientID},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl)), ID: randomString(),
	})
	if err != nil {
		// Signing with a freshly generated P-256 key cannot fail; a
		// panic in a test fixture beats a silently empty token.
		panic("fakeoauth: signing an ID token: " + err.Error())
	}
	return s
}

// sign serializes claims as a compact JWS with the IdP's key, its kid
// and the given typ header.
func (p *IdP) sign(typ string, claims ...any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.key, KeyID: p.kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	b := jwt.Signed(signer)
	for _, c := range claims {
		b = b.Claims(c)
	}
	return b.Serialize()
}

// ServeHTTP implements http.Handler: the token endpoint, the JWKS and a
// minimal OpenID Connect discovery document.
func (p *IdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/token":
		p.serveToken(w, r)
	case "/jwks":
		pub := jose.JSONWebKey{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.ES256), Use: "sig"}
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	case "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server":
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": p.Issuer(), "token_endpoint": p.TokenURL(), "jwks_uri": p.JWKSURL(),
			"grant_types_supported":                 []string{GrantTokenExchange},
			"token_endpoint_auth_methods_supported": []string{methodBasic, methodPost},
		})
	default:
		http.NotFound(w, r)
	}
}

// idpError writes an RFC 6749 §5.2 error.
func idpError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="fakeoauth-idp"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// serveToken exchanges an ID token for an ID-JAG (PROTOCOL.md §11).
// Descriptions name what is wrong, never a token.
func (p *IdP) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		idpError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		idpError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	client, ok := p.authenticate(r)
	if !ok {
		idpError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != GrantTokenExchange:
		idpError(w, http.StatusBadRequest, "unsupported_grant_type", "this IdP only does token exchange")
		return
	case f.Get("subject_token") == "":
		idpError(w, http.StatusBadRequest, "invalid_request", "subject_token is missing")
		return
	case f.Get("subject_token_type") != TokenTypeIDToken:
		idpError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be "+TokenTypeIDToken)
		return
	case f.Get("requested_token_type") != TokenTypeIDJAG:
		idpError(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be "+TokenTypeIDJAG)
		return
	case f.Get("audience") == "":
		idpError(w, http.StatusBadRequest, "invalid_request", "audience is missing")
		return
	}
	idt, ok := p.verifyIDToken(f.Get("subject_token"), client)
	if !ok {
		idpError(w, http.StatusBadRequest, "invalid_grant", "the subject token is not a valid, unexpired ID token issued by this IdP to this client")
		return
	}
	now := time.Now()
	// The grant never outlives the login it stands for.
	exp := now.Add(p.opts.IDJAGTTL)
	if idt.Expiry.Time().Before(exp) {
		exp = idt.Expiry.Time()
	}
	resourceClient := p.opts.ResourceClientID
	if resourceClient == "" {
		resourceClient = client
	}
	claims := jwt.Claims{Issuer: p.Issuer(), Subject: idt.Subject, Audience: jwt.Audience{f.Get("audience")},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp), ID: randomString()}
	extra := map[string]any{"client_id": resourceClient}
	if res := f.Get("resource"); res != "" {
		extra["resource"] = res
	}
	if sc := strings.Join(strings.Fields(f.Get("scope")), " "); sc != "" {
		extra["scope"] = sc
	}
	grant, err := p.sign(IDJAGType, claims, extra)
	if err != nil {
		idpError(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	p.mu.Lock()
	p.exchanges = append(p.exchanges, IdPExchange{Client: client, Subject: idt.Subject, Audience: f.Get("audience"), Resource: f.Get("resource")})
	p.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": grant, "issued_token_type": TokenTypeIDJAG, "token_type": "N_A",
		// Rounded up, so a grant cut short by the ID token still says
		// at least one second rather than a lifetime of 0 ("unknown").
		"expires_in": int((exp.Sub(now) + time.Second - 1) / time.Second),
	})
}

// authenticate accepts client_secret_basic (form-urlencoded id and
// secret, RFC 6749 §2.3.1) or client_secret_post, not both.
func (p *IdP) authenticate(r *http.Request) (string, bool) {
	u, pw, basic := r.BasicAuth()
	post := r.PostForm.Has("client_secret")
	var id, secret string
	switch {
	case basic && post:
		return "", false
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(pw)
		if err1 != nil || err2 != nil {
			return "", false
		}
	case post:
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	default:
		return "", false
	}
	p.mu.Lock()
	want, known := p.clients[id]
	p.mu.Unlock()
	return id, known && secret != "" && secret == want
}

// verifyIDToken checks, with go-jose, that raw is an ID token this IdP
// signed (not an ID-JAG presented back), issued to client, unexpired,
// with a subject.
func (p *IdP) verifyIDToken(raw, client string) (*jwt.Claims, bool) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 || isIDJAGHeader(tok.Headers[0]) {
		return nil, false
	}
	var c jwt.Claims
	if tok.Claims(&p.key.PublicKey, &c) != nil {
		return nil, false
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: p.Issuer(), AnyAudience: jwt.Audience{client}, Time: time.Now()}, 0)
	if err != nil || c.Expiry == nil || c.Subject == "" {
		return nil, false
	}
	return &c, true
}

// isIDJAGHeader reports whether a JWS header's typ names an ID-JAG; typ
// is compared case-insensitively and may carry the "application/"
// prefix (RFC 7515 §4.1.9).
func isIDJAGHeader(h jose.Header) bool {
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), IDJAGType)
}
