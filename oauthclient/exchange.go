package oauthclient

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GrantTokenExchange is the RFC 8693 §2.1 grant type: one token (the
// subject token) exchanged for another, sent with Request.SubjectToken,
// SubjectTokenType and optionally RequestedTokenType and Audience.
const GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// Token type identifiers (RFC 8693 §3) for subject_token_type,
// requested_token_type and the answer's issued_token_type.
const (
	// TokenTypeAccessToken is an OAuth 2.0 access token.
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeRefreshToken is an OAuth 2.0 refresh token.
	TokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
	// TokenTypeIDToken is an OpenID Connect ID token.
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
	// TokenTypeJWT is a JWT of no more specific type.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
	// TokenTypeIDJAG is the Identity Assertion JWT Authorization Grant of
	// MCP enterprise-managed authorization: issued by the enterprise IdP,
	// then presented as the jwt-bearer assertion at the resource's
	// authorization server (PROTOCOL.md §11).
	TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"
)

// subjectTokenTypes are the short names a configuration may use.
var subjectTokenTypes = map[string]string{
	"access_token":  TokenTypeAccessToken,
	"id_token":      TokenTypeIDToken,
	"jwt":           TokenTypeJWT,
	"refresh_token": TokenTypeRefreshToken,
}

// SubjectTokenTypeURN turns a configured subject token type into the
// RFC 8693 URN: access_token, id_token, jwt and refresh_token are
// shorthands; a value starting with "urn:" is taken as the URN itself,
// so that types this package does not name still work.
func SubjectTokenTypeURN(name string) (string, error) {
	if urn, ok := subjectTokenTypes[name]; ok {
		return urn, nil
	}
	if strings.HasPrefix(name, "urn:") && len(name) > len("urn:") {
		return name, nil
	}
	return "", fmt.Errorf("oauthclient: unknown subject token type %q: want access_token, id_token, jwt, refresh_token or a urn: token type", name)
}

// setExchange adds the RFC 8693 parameters of req that are set.
func setExchange(form url.Values, req Request) {
	for _, p := range []struct{ name, value string }{
		{"subject_token", req.SubjectToken},
		{"subject_token_type", req.SubjectTokenType},
		{"requested_token_type", req.RequestedTokenType},
		{"audience", req.Audience},
	} {
		if p.value != "" {
			form.Set(p.name, p.value)
		}
	}
}

// maxSubjectTokenBytes bounds what SubjectOf parses: real ID tokens and
// access token JWTs are a few KiB, and the caller is on a request path.
const maxSubjectTokenBytes = 16 << 10

// unverifiedAlgs is every signature algorithm go-jose parses. Since
// SubjectOf verifies nothing, accepting all of them loses nothing and
// keys tokens from any issuer.
var unverifiedAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
}

// SubjectOf reads the `sub` and `exp` claims of a compact JWS JWT
// WITHOUT verifying its signature. It exists so that the gateway can key
// a cache of exchanged tokens per subject and stop using one when the
// subject token expires; the authorization server that receives the
// token verifies it. Nothing it returns may be used to authorize.
//
// The subject is `sub` alone, not qualified by `iss`: a `sub` is unique
// only within its issuer, so a caller that accepts tokens from more than
// one issuer must keep their caches apart itself.
//
// expiry is the zero time when the JWT has no `exp`. isJWT is false (and
// the other results empty) for an opaque token, a JWE, a token over
// 16 KiB or a JWS whose payload is not a JWT claims set.
func SubjectOf(token string) (subject string, expiry time.Time, isJWT bool) {
	// A compact JWS has exactly two dots; checking first keeps opaque
	// tokens off the parser.
	if len(token) > maxSubjectTokenBytes || strings.Count(token, ".") != 2 {
		return "", time.Time{}, false
	}
	tok, err := jwt.ParseSigned(token, unverifiedAlgs)
	if err != nil {
		return "", time.Time{}, false
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return "", time.Time{}, false
	}
	if claims.Expiry != nil {
		expiry = claims.Expiry.Time()
	}
	return claims.Subject, expiry, true
}
