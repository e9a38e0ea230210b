package fakeoauth

// DPoP (RFC 9449) at the fake servers, verified with this package's own
// go-jose code (never the gateway's), so that a bug in the gateway's
// proofs cannot be mirrored by the same bug in their verification.

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// dpopLeeway is how far iat may be from now, either way.
	dpopLeeway = 60 * time.Second
	// dpopAlgValues is advertised in DPoP challenges (algs).
	dpopAlgValues = "ES256 ES384 ES512 RS256 PS256 EdDSA"
)

// dpopAlgs are the asymmetric algorithms accepted in proofs; symmetricAlgs
// are parsed only to name the fault of a proof signed with one.
var (
	dpopAlgs      = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}
	symmetricAlgs = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}
)

// dpopProof is what a request's DPoP header held, read before any lock:
// reason is set when it failed a stateless check; jti and nonce are
// judged later against the server's state.
type dpopProof struct {
	jkt, jti, nonce string
	reason          string
}

// dpopState is one server's DPoP bookkeeping, guarded by that server's mu.
type dpopState struct {
	nonce    string          // current nonce, made on first use
	jtis     map[string]bool // jti of every proof whose signature verified
	verified int             // proofs accepted
	failures []string        // reasons of proofs refused
}

// currentNonce returns the nonce, creating it on first use.
func (s *dpopState) currentNonce() string {
	if s.nonce == "" {
		s.nonce = "n_" + randomString()
	}
	return s.nonce
}

func (s *dpopState) fail(reason string) string {
	s.failures = append(s.failures, reason)
	return reason
}

// judge checks the stateful parts of p: jti replay, then the nonce when
// required. It returns a failure reason, or useNonce when the proof is
// good but lacks the current nonce. The jti of a proof whose signature
// verified is remembered whatever the outcome, so that no signed proof
// is ever accepted twice.
func (s *dpopState) judge(p *dpopProof, requireNonce bool) (reason string, useNonce bool) {
	if s.jtis == nil {
		s.jtis = map[string]bool{}
	}
	replay := p.jti != "" && s.jtis[p.jti]
	if p.jti != "" {
		s.jtis[p.jti] = true
	}
	switch {
	case p.reason != "":
		return s.fail(p.reason), false
	case replay:
		return s.fail("jti was already used"), false
	}
	if requireNonce && p.nonce != s.currentNonce() {
		return "", true
	}
	s.verified++
	return "", false
}

// readDPoP reads and verifies the request's DPoP proof (RFC 9449 §4.3)
// for method and htu, and ath when accessToken is set: nil when the
// request has no DPoP header.
func readDPoP(r *http.Request, htu, accessToken string) *dpopProof {
	values := r.Header.Values("DPoP")
	if len(values) == 0 {
		return nil
	}
	p := &dpopProof{}
	if len(values) > 1 {
		p.reason = "more than one DPoP header"
		return p
	}
	p.reason = verifyDPoP(p, values[0], r.Method, htu, accessToken, time.Now())
	return p
}

// dpopClaims are the claims checked; iat as a float since JSON numbers
// may be sent as such.
type dpopClaims struct {
	JTI   string   `json:"jti"`
	HTM   string   `json:"htm"`
	HTU   string   `json:"htu"`
	IAT   *float64 `json:"iat"`
	ATH   string   `json:"ath"`
	Nonce string   `json:"nonce"`
}

// verifyDPoP checks one proof and fills in p; it returns "" or why the
// proof is refused. The reasons name the fault, never the proof.
func verifyDPoP(p *dpopProof, raw, method, htu, accessToken string, now time.Time) string {
	jws, err := jose.ParseSigned(raw, dpopAlgs)
	if err != nil {
		if s, err := jose.ParseSigned(raw, symmetricAlgs); err == nil && len(s.Signatures) == 1 {
			return "alg " + s.Signatures[0].Protected.Algorithm + " is not asymmetric"
		}
		// go-jose refuses a private or malformed embedded jwk while
		// parsing; its message names the parameter, not the key.
		if msg := err.Error(); strings.Contains(msg, "JWK") || strings.Contains(msg, "jwk") {
			return "jwk is not a valid public key"
		}
		return "not a compact JWS with an asymmetric alg"
	}
	if len(jws.Signatures) != 1 {
		return "not exactly one signature"
	}
	hdr := jws.Signatures[0].Protected
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return "typ is not dpop+jwt"
	}
	jwk := hdr.JSONWebKey
	switch {
	case jwk == nil:
		return "no jwk header"
	case !jwk.IsPublic():
		return "jwk holds a private key"
	case !jwk.Valid():
		return "jwk is not a valid public key"
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return "signature does not verify with the jwk"
	}
	var c dpopClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return "claims are not a JSON object of the expected types"
	}
	// Known from here even if a claim is wrong: a signed proof's jti is
	// spent whatever becomes of it.
	p.jti = c.JTI
	switch {
	case c.JTI == "":
		return "jti is missing"
	case c.HTM != method:
		return "htm " + c.HTM + " is not the request's method " + method
	case c.HTU != htu:
		// The claim is shown up to any query, which a proof must not
		// carry and which could hold a secret.
		shown, _, _ := strings.Cut(c.HTU, "?")
		return "htu " + shown + " is not " + htu
	case c.IAT == nil:
		return "iat is missing"
	}
	iat := time.Unix(int64(*c.IAT), 0)
	if iat.Before(now.Add(-dpopLeeway)) || iat.After(now.Add(dpopLeeway)) {
		return "iat is more than 60s from now"
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return "ath is not the hash of the access token"
		}
	}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "jwk has no thumbprint"
	}
	p.jkt = base64.RawURLEncoding.EncodeToString(sum)
	p.nonce = c.Nonce
	return ""
}

// tokenDPoP runs a token request carrying a DPoP proof: the proof is
// judged first, so that a refusal (bad proof, missing nonce) happens
// before any grant is used, then the grant, whose tokens are bound to the
// proof's key. The caller holds a.mu.
func (a *AuthServer) tokenDPoP(r *http.Request, entry *TokenRequestLog, p *dpopProof) tokenReply {
	if p == nil {
		return a.grant(r, entry)
	}
	reason, useNonce := a.dpop.judge(p, a.opts.DPoPNonce)
	switch {
	case reason != "":
		return failed(http.StatusBadRequest, "invalid_dpop_proof", reason)
	case useNonce:
		reply := failed(http.StatusBadRequest, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof")
		reply.header = http.Header{"Dpop-Nonce": {a.dpop.currentNonce()}}
		return reply
	}
	entry.DPoPKey = p.jkt
	reply := a.grant(r, entry)
	if reply.status == http.StatusOK && reply.code == "" && !a.opts.DPoPAnswerBearer {
		a.bindReply(&reply, p.jkt)
	}
	if a.opts.DPoPNonce {
		// A nonce may ride on any answer (RFC 9449 §8.2).
		if reply.header == nil {
			reply.header = http.Header{}
		}
		reply.header.Set("DPoP-Nonce", a.dpop.currentNonce())
	}
	return reply
}

// bindReply binds the tokens of a successful reply to jkt and makes its
// token_type DPoP. The caller holds a.mu.
func (a *AuthServer) bindReply(reply *tokenReply, jkt string) {
	if at, _ := reply.fields["access_token"].(string); a.tokens.access[at] != nil {
		a.tokens.access[at].jkt = jkt
	}
	if rt, _ := reply.fields["refresh_token"].(string); a.tokens.refresh[rt] != nil {
		a.tokens.refresh[rt].jkt = jkt
	}
	reply.fields["token_type"] = "DPoP"
}

// DPoPStats returns the DPoP proofs the token endpoint accepted and the
// reasons of those it refused (use_dpop_nonce answers are neither).
func (a *AuthServer) DPoPStats() (verified int, failures []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dpop.verified, slices.Clone(a.dpop.failures)
}

// BoundKey is the RFC 7638 thumbprint (jkt) of the key accessToken is
// bound to, "" when it is unbound or unknown.
func (a *AuthServer) BoundKey(accessToken string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at := a.tokens.access[accessToken]; at != nil {
		return at.jkt
	}
	return ""
}

// RotateDPoPNonce replaces the token endpoint's DPoP nonce: proofs with
// the old one get use_dpop_nonce.
func (a *AuthServer) RotateDPoPNonce() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dpop.nonce = ""
}

// cutAuthorization returns the lower-cased scheme (bearer or dpop) and
// the token of an Authorization header; "" for other schemes.
func cutAuthorization(auth string) (scheme, token string) {
	s, tok, ok := strings.Cut(auth, " ")
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return "", ""
	}
	s = strings.ToLower(s)
	if s != "bearer" && s != "dpop" {
		return "", ""
	}
	return s, tok
}

// checkDPoP enforces the token's binding (RFC 9449 §7): a bound token
// must come with the DPoP scheme and a proof by its key, an unbound one
// with Bearer as before. On failure it has answered 401 and returns false.
func (u *Upstream) checkDPoP(w http.ResponseWriter, r *http.Request, scheme, token string) bool {
	jkt := u.opts.AuthServer.BoundKey(token)
	if jkt == "" {
		if scheme == "dpop" {
			u.denyDPoP(w, "invalid_token", u.recordDPoPFailure("an unbound token was sent with the DPoP scheme"), "")
			return false
		}
		return true
	}
	if scheme != "dpop" {
		u.denyDPoP(w, "invalid_token", u.recordDPoPFailure("a DPoP-bound token was sent as Bearer"), "")
		return false
	}
	// The path as sent (escaped), which is what a client puts in htu.
	p := readDPoP(r, u.URL()+r.URL.EscapedPath(), token)
	if p == nil {
		p = &dpopProof{reason: "no DPoP proof with a DPoP-bound token"}
	} else if p.reason == "" && p.jkt != jkt {
		p.reason = "the proof's key is not the one the token is bound to"
	}
	u.mu.Lock()
	reason, useNonce := u.dpop.judge(p, u.opts.DPoPNonce)
	nonce := ""
	if u.opts.DPoPNonce {
		nonce = u.dpop.currentNonce()
	}
	u.mu.Unlock()
	switch {
	case reason != "":
		u.denyDPoP(w, "invalid_dpop_proof", reason, nonce)
		return false
	case useNonce:
		u.denyDPoP(w, "use_dpop_nonce", "Resource server requires nonce in DPoP proof", nonce)
		return false
	}
	if nonce != "" {
		w.Header().Set("DPoP-Nonce", nonce)
	}
	return true
}

func (u *Upstream) recordDPoPFailure(reason string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dpop.fail(reason)
}

// denyDPoP answers 401 with a DPoP challenge (RFC 9449 §7.1).
func (u *Upstream) denyDPoP(w http.ResponseWriter, code, desc, nonce string) {
	u.mu.Lock()
	u.unauthorized++
	u.mu.Unlock()
	w.Header().Set("WWW-Authenticate", `DPoP error="`+code+`", error_description="`+strings.ReplaceAll(desc, `"`, "'")+`", algs="`+dpopAlgValues+`"`)
	if nonce != "" {
		w.Header().Set("DPoP-Nonce", nonce)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Unauthorized"}}` + "\n"))
}

// DPoPStats returns the proofs accepted, how many distinct jti values
// came in proofs whose signature verified (accepted or not), and the
// reasons of refusals (use_dpop_nonce answers are not failures).
func (u *Upstream) DPoPStats() (verified int, distinctJTIs int, failures []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dpop.verified, len(u.dpop.jtis), slices.Clone(u.dpop.failures)
}

// RotateDPoPNonce replaces the upstream's DPoP nonce: proofs with the old
// one get use_dpop_nonce.
func (u *Upstream) RotateDPoPNonce() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.dpop.nonce = ""
}
