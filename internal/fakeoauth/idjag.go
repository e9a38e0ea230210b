package fakeoauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// trustedIssuer is an IdP whose ID-JAGs and JWTs the AuthServer accepts,
// with its keys fetched from its JWKS URL.
type trustedIssuer struct {
	jwksURL string
	keys    *jose.JSONWebKeySet
	fetched time.Time
	fetches int
}

// idjagState is what the AuthServer keeps for enterprise-managed
// authorization. Guarded by AuthServer.mu; created on first use, so that
// NewAuthServer needs no change.
type idjagState struct {
	issuers       map[string]*trustedIssuer
	usedJTIs      map[string]bool   // iss NUL jti of accepted ID-JAGs
	subjectTokens map[string]string // opaque subject token -> subject
	exchanges     []string          // subjects of token exchanges that succeeded
}

// idjagLocked returns the state, seeding it from the options on first
// use. The caller holds a.mu.
func (a *AuthServer) idjagLocked() *idjagState {
	if a.idjag == nil {
		a.idjag = &idjagState{issuers: map[string]*trustedIssuer{}, usedJTIs: map[string]bool{}, subjectTokens: map[string]string{}}
		for iss, u := range a.opts.TrustedIDJAGIssuers {
			a.idjag.issuers[iss] = &trustedIssuer{jwksURL: u}
		}
	}
	return a.idjag
}

// TrustIDJAG makes the server accept ID-JAGs (as jwt-bearer assertions)
// and token-exchange subject tokens signed by issuer, whose keys are
// served at jwksURL (http allowed). Like AuthServerOptions.TrustedIDJAGIssuers.
func (a *AuthServer) TrustIDJAG(issuer, jwksURL string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.idjagLocked().issuers[issuer] = &trustedIssuer{jwksURL: jwksURL}
}

// IDJAGKeyFetches counts the JWKS fetches made for a trusted issuer,
// failed ones included.
func (a *AuthServer) IDJAGKeyFetches(issuer string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ti := a.idjagLocked().issuers[issuer]; ti != nil {
		return ti.fetches
	}
	return 0
}

// issuerJWT is the JWT a request brings from a trusted issuer: the
// jwt-bearer assertion or the token-exchange subject token.
func issuerJWT(form url.Values) string {
	switch form.Get("grant_type") {
	case GrantJWTBearer:
		return form.Get("assertion")
	case GrantTokenExchange:
		return form.Get("subject_token")
	}
	return ""
}

// unverifiedIssuer is the iss of a compact JWS, unverified: it only
// picks which keys to verify with.
func unverifiedIssuer(raw string) (*jwt.JSONWebToken, string) {
	tok, err := jwt.ParseSigned(raw, keyAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return nil, ""
	}
	var c jwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&c) != nil {
		return nil, ""
	}
	return tok, c.Issuer
}

// refreshIssuerKeys fetches the JWKS of the trusted issuer named by the
// request's JWT when its cached copy is stale (JWKSCacheTTL), so that the
// grant, which runs under a.mu, finds it. The caller must not hold a.mu;
// a failed fetch leaves the issuer without keys (its JWTs fail).
func (a *AuthServer) refreshIssuerKeys(ctx context.Context, r *http.Request) {
	raw := issuerJWT(r.PostForm)
	if raw == "" {
		return
	}
	_, iss := unverifiedIssuer(raw)
	a.mu.Lock()
	ti := a.idjagLocked().issuers[iss]
	if ti == nil || (ti.keys != nil && time.Since(ti.fetched) < a.jwksTTL()) {
		a.mu.Unlock()
		return
	}
	u := ti.jwksURL
	ti.fetches++
	a.mu.Unlock()

	keys, err := getJWKS(ctx, u)

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.idjag.issuers[iss] != ti { // replaced meanwhile
		return
	}
	ti.fetched, ti.keys = time.Now(), keys
	if err != nil {
		ti.keys = nil
	}
}

// issuerClaims are the claims of an ID-JAG or a subject token JWT.
type issuerClaims struct {
	jwt.Claims
	ClientID string `json:"client_id,omitempty"`
	Resource string `json:"resource,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// verifyIssuerJWT verifies raw against the keys of its trusted issuer
// and checks exp and sub. It returns the claims and the JWS header, or
// an invalid_grant description that names no token. The caller holds a.mu.
func (a *AuthServer) verifyIssuerJWT(raw string) (*issuerClaims, jose.Header, string) {
	tok, iss := unverifiedIssuer(raw)
	if tok == nil {
		return nil, jose.Header{}, "not a signed JWT with an accepted alg"
	}
	ti := a.idjagLocked().issuers[iss]
	if ti == nil {
		return nil, jose.Header{}, "the issuer is not trusted"
	}
	hdr := tok.Headers[0]
	var c issuerClaims
	if !verifyWithKeys(tok, hdr, ti.keys, &c) {
		return nil, hdr, "the signature does not verify against the issuer's keys"
	}
	switch {
	case c.Expiry == nil || !time.Now().Before(c.Expiry.Time()):
		return nil, hdr, "expired or without exp"
	case c.NotBefore != nil && c.NotBefore.Time().After(time.Now().Add(assertionLeeway)):
		return nil, hdr, "not valid yet"
	case c.Subject == "":
		return nil, hdr, "no subject"
	}
	return &c, hdr, ""
}

// idjagGrant is the jwt-bearer grant with an ID-JAG as the assertion
// (MCP enterprise-managed authorization): verified against its trusted
// issuer's keys, aud exactly this issuer, jti single-use, resource and
// client_id bound to the request. The access token's subject is the
// ID-JAG's sub; there is no refresh token (the client gets a new ID-JAG
// instead). Each grant is logged with BearerAssertions. The caller holds a.mu.
func (a *AuthServer) idjagGrant(client, raw string, requested []string, resource string) tokenReply {
	entry := BearerAssertion{}
	defer func() { a.bearerLog = append(a.bearerLog, entry) }()
	bad := func(desc string) tokenReply { return failed(http.StatusBadRequest, "invalid_grant", "ID-JAG: "+desc) }
	c, _, desc := a.verifyIssuerJWT(raw)
	if c == nil {
		return bad(desc)
	}
	entry.Subject, entry.ID = c.Subject, c.ID
	st := a.idjagLocked()
	used := c.Issuer + "\x00" + c.ID
	switch {
	case len(c.Audience) != 1 || c.Audience[0] != a.issuerLocked():
		return bad("aud must be exactly the issuer " + a.issuerLocked())
	case c.ID == "":
		return bad("jti is missing")
	case st.usedJTIs[used]:
		return bad("the ID-JAG was already used")
	case resource != "" && c.Resource != "" && resource != c.Resource:
		return bad("the resource differs from the ID-JAG's")
	case c.ClientID != client:
		return bad("client_id is not the authenticated client")
	}
	st.usedJTIs[used] = true
	entry.Accepted = true
	scopes := requested
	if len(scopes) == 0 {
		scopes = strings.Fields(c.Scope)
	}
	if resource == "" {
		resource = c.Resource
	}
	at := a.tokens.issueAccess(client, scopes, resource, "", c.Subject, a.opts.AccessTTL)
	return a.success(at, scopes, "")
}

// assertionGrants runs the grants of enterprise-managed authorization:
// a jwt-bearer grant whose assertion is typed as an ID-JAG, and token
// exchange. ok is false for any other request, which the ordinary grant
// dispatch handles (a jwt-bearer grant with a plain JWT included). The
// caller holds a.mu and has authenticated the client.
func (a *AuthServer) assertionGrants(client string, form url.Values, requested []string, resource string) (tokenReply, bool) {
	switch form.Get("grant_type") {
	case GrantJWTBearer:
		tok, err := jwt.ParseSigned(form.Get("assertion"), keyAlgs)
		if err != nil || len(tok.Headers) != 1 || !isIDJAGHeader(tok.Headers[0]) {
			return tokenReply{}, false
		}
		return a.idjagGrant(client, form.Get("assertion"), requested, resource), true
	case GrantTokenExchange:
		return a.tokenExchange(client, form, requested, resource), true
	}
	return tokenReply{}, false
}

// audienceListed reports whether any of aud is this issuer or one of
// the configured TokenExchangeAudiences.
func (a *AuthServer) audienceListed(aud jwt.Audience) bool {
	for _, v := range aud {
		if v == a.issuerLocked() || slices.Contains(a.opts.TokenExchangeAudiences, v) {
			return true
		}
	}
	return false
}
