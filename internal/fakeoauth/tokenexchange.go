package fakeoauth

import (
	"net/http"
	"net/url"
	"slices"
)

// exchangeSubjectTypes are the subject_token_type values accepted by the
// AuthServer's token exchange.
var exchangeSubjectTypes = []string{TokenTypeAccessToken, TokenTypeIDToken, TokenTypeJWT, TokenTypeRefreshToken}

// AddSubjectToken registers an opaque token that the token exchange
// grant accepts as a subject token for subject, standing in for a token
// this server could introspect.
func (a *AuthServer) AddSubjectToken(token, subject string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.idjagLocked().subjectTokens[token] = subject
}

// SubjectExchanges lists the subjects of the token exchanges that
// succeeded, oldest first.
func (a *AuthServer) SubjectExchanges() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.idjagLocked().exchanges)
}

// tokenExchange is the RFC 8693 grant at this server: the subject token
// is either an opaque token registered with AddSubjectToken or a JWT (an
// ID token, an access token JWT) signed by a trusted issuer whose aud
// names this issuer or one of TokenExchangeAudiences. The answer is an
// access token for the subject token's subject, without a refresh token.
// The audience parameter is not checked: RFC 8693 leaves its meaning to
// the server, and this one issues for itself only. The caller holds a.mu.
func (a *AuthServer) tokenExchange(client string, form url.Values, requested []string, resource string) tokenReply {
	subjectToken, typ := form.Get("subject_token"), form.Get("subject_token_type")
	switch {
	case subjectToken == "":
		return failed(http.StatusBadRequest, "invalid_request", "subject_token is missing")
	case typ == "":
		return failed(http.StatusBadRequest, "invalid_request", "subject_token_type is missing")
	case !slices.Contains(exchangeSubjectTypes, typ):
		return failed(http.StatusBadRequest, "invalid_request", "subject_token_type "+typ+" is not supported")
	case form.Has("requested_token_type") && form.Get("requested_token_type") != TokenTypeAccessToken:
		return failed(http.StatusBadRequest, "invalid_request", "only access tokens are issued here")
	case form.Has("actor_token"):
		return failed(http.StatusBadRequest, "invalid_request", "delegation (actor_token) is not supported")
	}
	st := a.idjagLocked()
	subject, opaque := st.subjectTokens[subjectToken]
	if !opaque {
		c, _, desc := a.verifyIssuerJWT(subjectToken)
		if c == nil {
			return failed(http.StatusBadRequest, "invalid_grant", "subject_token: "+desc)
		}
		if !a.audienceListed(c.Audience) {
			return failed(http.StatusBadRequest, "invalid_grant", "subject_token: aud is neither this issuer nor an accepted audience")
		}
		subject = c.Subject
	}
	st.exchanges = append(st.exchanges, subject)
	at := a.tokens.issueAccess(client, requested, resource, "", subject, a.opts.AccessTTL)
	reply := a.success(at, requested, "")
	reply.fields["issued_token_type"] = TokenTypeAccessToken
	return reply
}
