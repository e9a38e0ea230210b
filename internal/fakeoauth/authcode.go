package fakeoauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// authCode is an issued authorization code and what it is bound to.
type authCode struct {
	client, redirectURI string
	challenge, method   string // PKCE; method S256 or plain
	scope, resource     string
	user                string
	expires             time.Time
	used                bool
	family              string // the refresh family issued from it
}

// issueCode stores a single-use code for req and user. The caller holds a.mu.
func (a *AuthServer) issueCode(req *authzRequest, user string) string {
	code := "ac_" + randomString()
	a.codes[code] = &authCode{
		client: req.clientID, redirectURI: req.redirectURI,
		challenge: req.challenge, method: req.method,
		scope: req.scope, resource: req.resource, user: user,
		expires: time.Now().Add(a.opts.CodeTTL),
	}
	return code
}

// authorizationCode is the RFC 6749 §4.1.3 grant with RFC 7636 PKCE. A
// code presented twice fails and revokes what it yielded (§4.1.2). The
// caller holds a.mu.
func (a *AuthServer) authorizationCode(clientID string, form url.Values, resource string) tokenReply {
	bad := func(desc string) tokenReply { return failed(http.StatusBadRequest, "invalid_grant", desc) }
	ac := a.codes[form.Get("code")]
	switch {
	case ac == nil:
		return bad("authorization code is invalid")
	case ac.used:
		if ac.family != "" {
			a.tokens.revoked[ac.family] = true
		}
		return bad("authorization code was already used")
	case time.Now().After(ac.expires):
		return bad("authorization code expired")
	case ac.client != clientID:
		return bad("authorization code was issued to another client")
	case form.Get("redirect_uri") != ac.redirectURI:
		return bad("redirect_uri does not match the authorization request")
	}
	if desc := checkVerifier(ac, form.Get("code_verifier")); desc != "" {
		return bad(desc)
	}
	if resource != "" && ac.resource != "" && resource != ac.resource {
		return failed(http.StatusBadRequest, "invalid_target", "resource differs from the authorization request's")
	}
	if resource == "" {
		resource = ac.resource
	}
	ac.used = true
	ac.family = randomString()
	scopes := strings.Fields(ac.scope)
	at := a.tokens.issueAccess(clientID, scopes, resource, ac.family, ac.user, a.opts.AccessTTL)
	rt := a.tokens.issueRefresh(clientID, scopes, ac.family, ac.user)
	return a.success(at, scopes, rt)
}

// checkVerifier checks the RFC 7636 §4.6 code_verifier; "" when it holds.
func checkVerifier(ac *authCode, verifier string) string {
	if ac.challenge == "" {
		if verifier != "" {
			return "code_verifier sent but the authorization request had no code_challenge"
		}
		return ""
	}
	if verifier == "" {
		return "code_verifier is missing"
	}
	if !validVerifier(verifier) {
		return "code_verifier is not 43 to 128 unreserved characters"
	}
	computed := verifier
	if ac.method != "plain" {
		sum := sha256.Sum256([]byte(verifier))
		computed = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(computed), []byte(ac.challenge)) != 1 {
		return "code_verifier does not match the code_challenge"
	}
	return ""
}

func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~", c)
		if !ok {
			return false
		}
	}
	return true
}
