package fakeoauth

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"time"
)

// tokenTable holds every token the AuthServer issued. Tokens are random
// opaque strings: the gateway must not be able to read anything into them.
// Guarded by AuthServer.mu.
type tokenTable struct {
	access  map[string]*accessToken
	refresh map[string]*refreshToken
	revoked map[string]bool // refresh token families
	issued  []string        // every token ever issued, for log scans
}

type accessToken struct {
	client   string
	scopes   []string
	resource string // RFC 8707 audience; "" means any
	expires  time.Time
	family   string // refresh token family, "" for client_credentials
	subject  string // the user who authorized it, "" for client_credentials
	jkt      string // thumbprint of the DPoP key it is bound to, "" for Bearer
}

// refreshToken is one member of a family: the tokens descending from one
// authorization through rotation. Reuse of a spent member is the signal
// RFC 9700 §4.14.2 uses to detect theft.
type refreshToken struct {
	client  string
	scopes  []string
	family  string
	subject string
	spent   bool
	spentAt time.Time // when it was first spent (for ReuseGrace)
	jkt     string    // thumbprint of the DPoP key it is bound to, "" when unbound
}

func newTokenTable() tokenTable {
	return tokenTable{
		access:  map[string]*accessToken{},
		refresh: map[string]*refreshToken{},
		revoked: map[string]bool{},
	}
}

func (t *tokenTable) issueAccess(client string, scopes []string, resource, family, subject string, ttl time.Duration) string {
	tok := "at_" + randomString()
	t.access[tok] = &accessToken{client: client, scopes: slices.Clone(scopes), resource: resource, expires: time.Now().Add(ttl), family: family, subject: subject}
	t.issued = append(t.issued, tok)
	return tok
}

func (t *tokenTable) issueRefresh(client string, scopes []string, family, subject string) string {
	if family == "" {
		family = randomString()
	}
	tok := "rt_" + randomString()
	t.refresh[tok] = &refreshToken{client: client, scopes: slices.Clone(scopes), family: family, subject: subject}
	t.issued = append(t.issued, tok)
	return tok
}

func (t *tokenTable) validate(token, resource string) ([]string, bool) {
	at, ok := t.access[token]
	if !ok || time.Now().After(at.expires) || (at.family != "" && t.revoked[at.family]) {
		return nil, false
	}
	if resource != "" && at.resource != "" && at.resource != resource {
		return nil, false
	}
	return slices.Clone(at.scopes), true
}

// IssueRefreshToken starts a refresh token family for clientID, as a
// completed authorization (code flow) would, and returns its first token.
func (a *AuthServer) IssueRefreshToken(clientID string, scopes []string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokens.issueRefresh(clientID, scopes, "", "")
}

// IssueAccessToken mints an access token without a token request, for
// tests that need one directly (a static header_up, a benchmark).
// resource "" makes it valid at any resource.
func (a *AuthServer) IssueAccessToken(clientID string, scopes []string, resource string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokens.issueAccess(clientID, scopes, resource, "", "", a.opts.AccessTTL)
}

// SubjectOf is the user an access token was issued for through the
// authorization code flow (or a refresh descending from it); "" for
// client_credentials tokens and unknown tokens.
func (a *AuthServer) SubjectOf(accessToken string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at := a.tokens.access[accessToken]; at != nil {
		return at.subject
	}
	return ""
}

// Validate reports whether token is a live access token and returns its
// scopes. It ignores the audience; ValidateFor checks it too.
func (a *AuthServer) Validate(token string) (scopes []string, ok bool) {
	return a.ValidateFor(token, "")
}

// ValidateFor is Validate plus the RFC 8707 audience check: a token
// requested for another resource is refused. resource "" skips the check.
func (a *AuthServer) ValidateFor(token, resource string) (scopes []string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokens.validate(token, resource)
}

// InvalidateAccessTokens makes every access token issued so far stop
// validating (refresh tokens are untouched), as a key rotation or a
// server-side session purge would.
func (a *AuthServer) InvalidateAccessTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.tokens.access)
}

// RevokeAll revokes every refresh token family issued so far: their
// refresh tokens get invalid_grant and their access tokens stop
// validating. Families started later are unaffected.
func (a *AuthServer) RevokeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rt := range a.tokens.refresh {
		a.tokens.revoked[rt.family] = true
	}
}

// IssuedSecrets returns every access and refresh token issued so far;
// tests scan logs for them.
func (a *AuthServer) IssuedSecrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.tokens.issued)
}

func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
