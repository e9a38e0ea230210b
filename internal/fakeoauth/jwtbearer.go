package fakeoauth

import (
	"net/http"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GrantJWTBearer is the RFC 7523 §2.1 grant type: a JWT from a trusted
// issuer (a workload's projected service-account token) as the grant.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// BearerAssertion is what the server saw of one jwt-bearer grant.
type BearerAssertion struct {
	Subject, ID string // sub and jti
	Accepted    bool
}

// BearerAssertions lists the jwt-bearer grants received, in order.
func (a *AuthServer) BearerAssertions() []BearerAssertion {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.bearerLog)
}

// jwtBearer verifies the assertion with the server's own code against
// opts.JWTBearerKeys (the trusted issuer's keys): signature, aud = this
// issuer, exp in the future. The access token's subject is the
// assertion's sub. The caller holds a.mu.
func (a *AuthServer) jwtBearer(client, assertion string, requested []string, resource string) tokenReply {
	entry := BearerAssertion{}
	defer func() { a.bearerLog = append(a.bearerLog, entry) }()
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256, jose.EdDSA})
	if err != nil {
		return failed(http.StatusBadRequest, "invalid_grant", "the assertion is not a signed JWT")
	}
	var claims jwt.Claims
	verified := false
	for _, k := range a.opts.JWTBearerKeys.Keys {
		if tok.Claims(k.Key, &claims) == nil {
			verified = true
			break
		}
	}
	entry.Subject, entry.ID = claims.Subject, claims.ID
	if !verified {
		return failed(http.StatusBadRequest, "invalid_grant", "the assertion's signature does not verify")
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{a.issuerLocked()}, Time: time.Now()}, 0); err != nil || claims.Subject == "" {
		return failed(http.StatusBadRequest, "invalid_grant", "the assertion is expired, for another audience, or has no subject")
	}
	entry.Accepted = true
	at := a.tokens.issueAccess(client, requested, resource, "", claims.Subject, a.opts.AccessTTL)
	return a.success(at, requested, "")
}
