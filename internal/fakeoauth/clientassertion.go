package fakeoauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	methodPrivateKeyJWT = "private_key_jwt"
	methodSecretJWT     = "client_secret_jwt"

	// assertionType is the RFC 7523 §2.2 client_assertion_type.
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLeeway is the clock skew allowed on exp, nbf and iat.
	assertionLeeway = 60 * time.Second
	// jwksLimit bounds a fetched JWKS.
	jwksLimit = 256 << 10
	// defaultJWKSCacheTTL is how long a fetched JWKS is used before the
	// next assertion refetches it.
	defaultJWKSCacheTTL = 5 * time.Second
)

// keyAlgs are the algorithms accepted from private_key_jwt clients,
// secretAlgs from client_secret_jwt clients.
var (
	keyAlgs    = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}
	secretAlgs = []jose.SignatureAlgorithm{jose.HS256}
	// signingAlgs is advertised as token_endpoint_auth_signing_alg_values_supported.
	signingAlgs = []string{"ES256", "RS256", "PS256", "EdDSA", "HS256"}
)

var jwksHTTP = &http.Client{Timeout: 5 * time.Second}

// AssertionRecord is what the server saw of one client assertion (RFC
// 7523 §2.2) it could parse, accepted or not. It holds no secret.
type AssertionRecord struct {
	ClientID   string   // iss of the assertion (the form client_id when iss is absent)
	KeyID      string   // kid header, "" when absent
	Alg        string   // alg header
	Aud        []string // aud as received: one element for a string
	AudIsArray bool     // aud was a JSON array
	JTI        string   // jti, "" when absent
	Accepted   bool     // the assertion authenticated the client
}

// AddKeyClient registers a client that authenticates with private_key_jwt
// (RFC 7523 §2.2), its public keys served as a JWKS at jwksURL (http is
// allowed). The JWKS is fetched when an assertion arrives and the cached
// copy is older than JWKSCacheTTL. AuthMethods must list private_key_jwt.
func (a *AuthServer) AddKeyClient(id, jwksURL string) {
	a.addAssertionClient(id, &client{assertion: methodPrivateKeyJWT, jwksURL: jwksURL})
}

// AddKeyClientKeys registers a private_key_jwt client with its keys
// given (public or private JWKs; only the public parts are used).
func (a *AuthServer) AddKeyClientKeys(id string, keys jose.JSONWebKeySet) {
	a.addAssertionClient(id, &client{assertion: methodPrivateKeyJWT, keys: cloneKeySet(keys)})
}

// AddSecretJWTClient registers a client that authenticates with
// client_secret_jwt: an HS256 assertion keyed with secret, which must be
// at least 32 bytes long. AuthMethods must list client_secret_jwt.
func (a *AuthServer) AddSecretJWTClient(id, secret string) {
	a.addAssertionClient(id, &client{assertion: methodSecretJWT, secret: secret})
}

func (a *AuthServer) addAssertionClient(id string, c *client) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.clients[id]; old != nil {
		c.redirectURIs = old.redirectURIs
	}
	a.clients[id] = c
}

// AssertionLog returns the client assertions received, oldest first.
func (a *AuthServer) AssertionLog() []AssertionRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.assertions)
	for i := range out {
		out[i].Aud = slices.Clone(out[i].Aud)
	}
	return out
}

// JWKSFetches counts the JWKS fetches made for client id, failed ones included.
func (a *AuthServer) JWKSFetches(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.clients[id]; c != nil {
		return c.jwksFetches
	}
	return 0
}

func cloneKeySet(s jose.JSONWebKeySet) *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: slices.Clone(s.Keys)}
}

func (a *AuthServer) jwksTTL() time.Duration {
	switch {
	case a.opts.JWKSCacheTTL < 0:
		return 0
	case a.opts.JWKSCacheTTL == 0:
		return defaultJWKSCacheTTL
	}
	return a.opts.JWKSCacheTTL
}

// hasAssertion reports whether the request carries client assertion parameters.
func hasAssertion(r *http.Request) bool {
	return r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type")
}

// assertionClientID is who the request's assertion claims to be: the form
// client_id, else the unverified iss.
func assertionClientID(r *http.Request) string {
	if id := r.PostForm.Get("client_id"); id != "" {
		return id
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), append(slices.Clone(keyAlgs), secretAlgs...))
	if err != nil {
		return ""
	}
	var c jwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&c) != nil {
		return ""
	}
	return c.Issuer
}

// refreshJWKS fetches the JWKS of the key client the request's assertion
// names when its cached copy is stale, so that authenticate, which runs
// under a.mu, finds it. The caller must not hold a.mu; a failed fetch
// leaves the client without keys (its assertions fail).
func (a *AuthServer) refreshJWKS(ctx context.Context, r *http.Request) {
	if !hasAssertion(r) {
		return
	}
	id := assertionClientID(r)
	a.mu.Lock()
	c := a.clients[id]
	if c == nil || c.jwksURL == "" || (c.keys != nil && time.Since(c.jwksFetched) < a.jwksTTL()) {
		a.mu.Unlock()
		return
	}
	u := c.jwksURL
	c.jwksFetches++
	a.mu.Unlock()

	keys, err := getJWKS(ctx, u)

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clients[id] != c { // replaced meanwhile
		return
	}
	c.jwksFetched = time.Now()
	if err != nil {
		c.keys = nil
		return
	}
	c.keys = keys
}

func getJWKS(ctx context.Context, u string) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := jwksHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksLimit+1))
	if err != nil {
		return nil, err
	}
	if len(body) > jwksLimit {
		return nil, errors.New("jwks: larger than 256 KiB")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	return &set, nil
}

// assertionClaims are the claims checked, aud kept raw to log it as sent.
type assertionClaims struct {
	jwt.Claims
	RawAud json.RawMessage `json:"aud,omitempty"`
}

// authenticateAssertion checks an RFC 7523 §2.2 client assertion. The
// caller holds a.mu, has parsed the form and has made sure no other
// authentication method is present.
func (a *AuthServer) authenticateAssertion(r *http.Request) authResult {
	fail := func(id, method, desc string) authResult {
		return authResult{id: id, method: method, code: "invalid_client", desc: desc, status: http.StatusUnauthorized}
	}
	raw := r.PostForm.Get("client_assertion")
	formID := r.PostForm.Get("client_id")
	if raw == "" || !r.PostForm.Has("client_assertion_type") {
		return authResult{id: formID, code: "invalid_request", desc: "client_assertion and client_assertion_type go together", status: http.StatusBadRequest}
	}
	if t := r.PostForm.Get("client_assertion_type"); t != assertionType {
		return fail(formID, "", "client_assertion_type "+t+" is not supported")
	}
	tok, err := jwt.ParseSigned(raw, append(slices.Clone(keyAlgs), secretAlgs...))
	if err != nil || len(tok.Headers) != 1 {
		return fail(formID, "", "client_assertion is not a compact JWS with an accepted alg")
	}
	hdr := tok.Headers[0]
	var unverified assertionClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return fail(formID, "", "client_assertion claims are not valid JSON")
	}
	rec := AssertionRecord{ClientID: unverified.Issuer, KeyID: hdr.KeyID, Alg: hdr.Algorithm, JTI: unverified.ID}
	if rec.ClientID == "" {
		rec.ClientID = formID
	}
	rec.Aud, rec.AudIsArray = rawAudience(unverified.RawAud)
	a.assertions = append(a.assertions, rec)
	logged := &a.assertions[len(a.assertions)-1]

	id := rec.ClientID
	c := a.clients[id]
	if c == nil || c.assertion == "" {
		return fail(id, "", "client authentication failed")
	}
	method := c.assertion
	if !slices.Contains(a.opts.AuthMethods, method) {
		return fail(id, method, method+" is not supported")
	}
	if formID != "" && formID != id {
		return fail(id, method, "client_id does not match the assertion's iss")
	}

	// Signature.
	var claims assertionClaims
	if method == methodSecretJWT {
		if !slices.Contains(secretAlgs, jose.SignatureAlgorithm(hdr.Algorithm)) {
			return fail(id, method, "alg "+hdr.Algorithm+" is not accepted for client_secret_jwt")
		}
		if err := tok.Claims([]byte(c.secret), &claims); err != nil {
			return fail(id, method, "client assertion signature is invalid")
		}
	} else {
		if !slices.Contains(keyAlgs, jose.SignatureAlgorithm(hdr.Algorithm)) {
			return fail(id, method, "alg "+hdr.Algorithm+" is not accepted for private_key_jwt")
		}
		if !verifyWithKeys(tok, hdr, c.keys, &claims) {
			return fail(id, method, "client assertion signature is invalid")
		}
	}

	// Claims (RFC 7523 §3).
	now := time.Now()
	switch {
	case claims.Issuer != id || claims.Subject != id:
		return fail(id, method, "iss and sub must both be the client_id")
	case !a.audienceOK(claims.RawAud):
		return fail(id, method, "aud must be the issuer identifier "+a.issuerLocked())
	case claims.Expiry == nil:
		return fail(id, method, "exp is missing")
	case !now.Before(claims.Expiry.Time().Add(assertionLeeway)):
		return fail(id, method, "the client assertion has expired")
	case claims.IssuedAt == nil:
		return fail(id, method, "iat is missing")
	case claims.IssuedAt.Time().After(now.Add(assertionLeeway)):
		return fail(id, method, "iat is in the future")
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(assertionLeeway)):
		return fail(id, method, "the client assertion is not valid yet")
	case claims.ID == "":
		return fail(id, method, "jti is missing")
	}
	if a.jtis == nil {
		a.jtis = map[string]bool{}
	}
	seen := id + "\x00" + claims.ID
	if a.jtis[seen] {
		return fail(id, method, "the client assertion's jti was already used")
	}
	a.jtis[seen] = true
	logged.Accepted = true
	return authResult{id: id, method: method}
}

// verifyWithKeys verifies tok against the keys matching the header's
// kid (all keys when it has none) and decodes its claims into dest.
func verifyWithKeys(tok *jwt.JSONWebToken, hdr jose.Header, set *jose.JSONWebKeySet, dest any) bool {
	if set == nil {
		return false
	}
	candidates := set.Keys
	if hdr.KeyID != "" {
		candidates = set.Key(hdr.KeyID)
	}
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		if !k.Valid() {
			continue
		}
		if tok.Claims(k, dest) == nil {
			return true
		}
	}
	return false
}

// rawAudience decodes aud as sent: a string or an array of strings.
func rawAudience(raw json.RawMessage) (aud []string, isArray bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, false
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list, true
	}
	return nil, false
}

// issuerLocked is Issuer for a caller holding a.mu.
func (a *AuthServer) issuerLocked() string { return a.origin + a.opts.IssuerPath }

// audienceOK accepts the issuer identifier, as a string or as the only
// element of an array; never the token endpoint URL.
func (a *AuthServer) audienceOK(raw json.RawMessage) bool {
	aud, _ := rawAudience(raw)
	return len(aud) == 1 && aud[0] == a.issuerLocked()
}
