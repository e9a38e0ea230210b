// Package oauthclient makes token endpoint requests (RFC 6749 §4.4, §6)
// with client authentication (§2.3.1), RFC 8707 resource indicators,
// timeouts and bounded reads, and classifies every answer through package
// normalize.
//
// It is written here rather than on golang.org/x/oauth2 because the
// gateway needs what that library does not offer on refresh: extra
// parameters (RFC 8707 `resource` on refresh requests), the raw
// classification of non-standard error bodies before parsing (HTTP 200
// with `error`, vendor codes), per-request client authentication without
// auto-detection retries (a retry could present a rotating refresh token
// twice), and Retry-After. The request itself is small.
package oauthclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
	"github.com/oauthgw/caddy-oauth-gateway/redact"
)

// GrantJWTBearer is the RFC 7523 §2.1 grant type: a JWT as the grant.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Client authentication methods (RFC 8414 token_endpoint_auth_methods).
const (
	AuthBasic = "client_secret_basic"
	AuthPost  = "client_secret_post"
	AuthNone  = "none"
)

// GrantAuthorizationCode is the grant_type of the authorization code
// grant (RFC 6749 §4.1.3), sent with Request.Code, RedirectURI and
// CodeVerifier.
const GrantAuthorizationCode = "authorization_code"

// Client sends token requests. The zero value is usable.
type Client struct {
	// HTTPClient sends requests (default: a client that never follows
	// redirects, so a token endpoint cannot bounce credentials elsewhere).
	HTTPClient *http.Client
	// Timeout bounds one request, including reading the body (default 15s).
	Timeout time.Duration
	// MaxBodyBytes bounds the response read (default 1 MiB).
	MaxBodyBytes int64
	// Aliases map vendor error codes to standard ones, over the built-in table.
	Aliases normalize.Aliases
	// UserAgent is sent on every request.
	UserAgent string
	// DPoPNonces remembers the DPoP-Nonce of each authorization server
	// (RFC 9449 §8) across requests; nil remembers nothing beyond one
	// Token call's retry.
	DPoPNonces *DPoPNonces
}

// Credentials authenticate the client. The secret is never logged or
// included in errors.
type Credentials struct {
	ClientID     string
	ClientSecret string
	// AuthMethod is AuthBasic (default), AuthPost, AuthNone,
	// AuthPrivateKeyJWT or AuthClientSecretJWT.
	AuthMethod string
	// Key signs the client assertion of AuthPrivateKeyJWT.
	Key *SigningKey
	// Audience is the aud of client assertions (AuthPrivateKeyJWT,
	// AuthClientSecretJWT): the authorization server's issuer identifier.
	Audience string
}

// Request is one token request.
type Request struct {
	TokenEndpoint string
	Grant         string // "client_credentials", "refresh_token" or GrantAuthorizationCode
	RefreshToken  string
	// Code, RedirectURI and CodeVerifier are the authorization_code
	// grant's `code`, `redirect_uri` (exactly as in the authorization
	// request) and PKCE `code_verifier` (RFC 7636 §4.5); each is sent
	// when set.
	Code         string
	RedirectURI  string
	CodeVerifier string
	// Assertion is the jwt-bearer grant's `assertion` (RFC 7523 §2.1),
	// sent when set and scrubbed from server text like a token.
	Assertion string
	// SubjectToken, SubjectTokenType, RequestedTokenType and Audience are
	// the RFC 8693 §2.1 token exchange parameters (GrantTokenExchange),
	// each sent when set; the subject token is scrubbed like Assertion.
	SubjectToken       string
	SubjectTokenType   string
	RequestedTokenType string
	Audience           string
	Scopes             []string
	// Resource is sent as RFC 8707 `resource`, exactly as given.
	Resource string
	// Extra parameters, for grants and extensions this package does not name.
	Extra url.Values
	// DPoP, when set, sends a DPoP proof (RFC 9449 §5) signed with this
	// key, so that the tokens issued are bound to it. The proof is
	// scrubbed from server text like a token.
	DPoP *DPoPKey
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Token performs the request and returns the parsed token response, or an
// error: *Error for an answer from the server, *TransportError when there
// was none.
func (c *Client) Token(ctx context.Context, creds Credentials, req Request) (*normalize.TokenResponse, error) {
	form := url.Values{}
	for k, vs := range req.Extra {
		form[k] = append([]string(nil), vs...)
	}
	form.Set("grant_type", req.Grant)
	if req.RefreshToken != "" {
		form.Set("refresh_token", req.RefreshToken)
	}
	if req.Assertion != "" {
		form.Set("assertion", req.Assertion)
	}
	if req.Code != "" {
		form.Set("code", req.Code)
	}
	setExchange(form, req)
	if req.RedirectURI != "" {
		form.Set("redirect_uri", req.RedirectURI)
	}
	if req.CodeVerifier != "" {
		form.Set("code_verifier", req.CodeVerifier)
	}
	if len(req.Scopes) > 0 {
		form.Set("scope", strings.Join(req.Scopes, " "))
	}
	if req.Resource != "" {
		form.Set("resource", req.Resource)
	}

	// Client assertions and DPoP proofs sent, one each per attempt, to
	// scrub from server text.
	sent := []string{req.RefreshToken, req.Code, req.CodeVerifier, req.Assertion, req.SubjectToken}
	origin, nonce := "", ""
	if req.DPoP != nil {
		origin = OriginOf(req.TokenEndpoint)
		nonce = c.DPoPNonces.Get(origin)
	}
	for attempt := 0; ; attempt++ {
		// Built anew per attempt: a client assertion's jti, like a
		// proof's, may be spent by the refused attempt.
		httpReq, assertion, err := c.newRequest(ctx, req.TokenEndpoint, creds, form)
		if err != nil {
			return nil, err
		}
		sent = append(sent, assertion)
		if req.DPoP != nil {
			proof, err := req.DPoP.Proof(http.MethodPost, req.TokenEndpoint, "", nonce)
			if err != nil {
				return nil, err
			}
			httpReq.Header.Set("DPoP", proof)
			sent = append(sent, proof)
		}
		status, header, body, err := c.do(httpReq)
		if err != nil {
			return nil, err
		}
		if req.DPoP != nil {
			// RFC 9449 §8: a server refusing a proof for its missing or
			// stale nonce has not used the grant, so one retry with the
			// new nonce cannot spend a rotating refresh token twice.
			if n, ok := UseDPoPNonce(status, header, body); ok && attempt == 0 {
				c.DPoPNonces.Set(origin, n)
				nonce = n
				continue
			}
			// A nonce may also arrive on any other answer (§8.2).
			c.DPoPNonces.Set(origin, header.Get("DPoP-Nonce"))
		}
		tok, oerr := normalize.TokenEndpoint(status, header, body, c.Aliases)
		if oerr != nil {
			// Server text reaches logs and clients: strip anything it echoed.
			scrubError(oerr, creds, sent...)
			return nil, &Error{Endpoint: redact.URL(req.TokenEndpoint), Err: oerr}
		}
		return tok, nil
	}
}

// newRequest builds a POST with client authentication (RFC 6749 §2.3.1):
// Basic with the form-urlencoded id and secret, or both in the body, or a
// JWT client assertion (RFC 7523 §2.2), which it also returns so that the
// caller can scrub it from server text.
func (c *Client) newRequest(ctx context.Context, endpoint string, creds Credentials, form url.Values) (*http.Request, string, error) {
	var assertion string
	switch creds.AuthMethod {
	case AuthPost:
		form.Set("client_id", creds.ClientID)
		if creds.ClientSecret != "" {
			form.Set("client_secret", creds.ClientSecret)
		}
	case AuthNone:
		form.Set("client_id", creds.ClientID)
	case AuthPrivateKeyJWT, AuthClientSecretJWT:
		a, err := clientAssertion(creds, time.Now())
		if err != nil {
			return nil, "", err
		}
		assertion = a
		form.Set("client_id", creds.ClientID)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
	case "", AuthBasic:
	default:
		return nil, "", fmt.Errorf("oauthclient: unsupported client authentication %q", creds.AuthMethod)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, "", fmt.Errorf("oauthclient: building request: %w", err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// GitHub answers form-encoded bodies without this (PROTOCOL.md §4).
	r.Header.Set("Accept", "application/json")
	if c.UserAgent != "" {
		r.Header.Set("User-Agent", c.UserAgent)
	}
	if creds.AuthMethod == "" || creds.AuthMethod == AuthBasic {
		r.Header.Set("Authorization", "Basic "+basicCredentials(creds.ClientID, creds.ClientSecret))
	}
	return r, assertion, nil
}

// clientAssertion is the client_assertion for creds' JWT method, or an
// error naming what is missing.
func clientAssertion(creds Credentials, now time.Time) (string, error) {
	m := creds.AuthMethod
	switch {
	case creds.ClientID == "":
		return "", fmt.Errorf("oauthclient: %s needs a client_id", m)
	case creds.Audience == "":
		return "", fmt.Errorf("oauthclient: %s needs the authorization server's issuer as Audience", m)
	case m == AuthPrivateKeyJWT && creds.Key == nil:
		return "", fmt.Errorf("oauthclient: %s needs a signing key", m)
	case m == AuthClientSecretJWT && creds.ClientSecret == "":
		return "", fmt.Errorf("oauthclient: %s needs a client secret", m)
	}
	key, secret := creds.Key, creds.ClientSecret
	if m == AuthClientSecretJWT {
		key = nil // HS256 with the secret, whatever else is set
	}
	return NewAssertion(creds.ClientID, creds.Audience, key, secret, now)
}

// basicCredentials encodes id and secret for HTTP Basic the way RFC 6749
// §2.3.1 asks: each form-urlencoded first (a secret with ':' or non-ASCII
// characters otherwise breaks at strict servers). redact builds the same
// value to scrub it from server text.
func basicCredentials(id, secret string) string {
	return redact.BasicCredentials(id, secret)
}

// scrubError removes from the server-supplied text of e (description,
// URI, vendor code, extension members) every form of the client secret
// (plain, url-encoded, base64, the Basic credentials built from it) and
// of tokens sent in the request, which a server may echo.
func scrubError(e *normalize.Error, creds Credentials, tokens ...string) {
	secrets := append(redact.ClientSecretForms(creds.ClientID, creds.ClientSecret), tokens...)
	e.Description = redact.Scrub(e.Description, secrets...)
	e.URI = redact.Scrub(e.URI, secrets...)
	e.VendorCode = redact.Scrub(e.VendorCode, secrets...)
	for k, v := range e.Extensions {
		e.Extensions[k] = scrubValue(v, secrets)
	}
}

func scrubValue(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		return redact.Scrub(x, secrets...)
	case map[string]any:
		for k, val := range x {
			x[k] = scrubValue(val, secrets)
		}
	case []any:
		for i := range x {
			x[i] = scrubValue(x[i], secrets)
		}
	}
	return v
}

// do sends r with the client's timeout and reads at most MaxBodyBytes.
func (c *Client) do(r *http.Request) (int, http.Header, []byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	limit := c.MaxBodyBytes
	if limit <= 0 {
		limit = 1 << 20
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = noRedirects
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	r = r.WithContext(ctx)

	resp, err := hc.Do(r)
	if err != nil {
		return 0, nil, nil, &TransportError{Endpoint: redactedEndpoint(r.URL), Err: stripURL(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, nil, nil, &TransportError{Endpoint: redactedEndpoint(r.URL), Err: stripURL(err)}
	}
	if int64(len(body)) > limit {
		return 0, nil, nil, &TransportError{Endpoint: redactedEndpoint(r.URL), Err: fmt.Errorf("response body over %d bytes", limit)}
	}
	return resp.StatusCode, resp.Header, body, nil
}

// redactedEndpoint is the endpoint as it may appear in errors and logs.
func redactedEndpoint(u *url.URL) string { return redact.URL(u.String()) }

// stripURL removes the *url.Error wrapper, whose message repeats the URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
