package normalize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TokenResponse is a successful token endpoint response (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	Scope        string
	IDToken      string
	// IssuedTokenType is RFC 8693 §2.2.1 issued_token_type, the type URN
	// of what a token exchange issued in AccessToken (which, with
	// token_type "N_A", need not be an access token: an ID-JAG is not).
	IssuedTokenType string
	// ExpiresIn is in seconds; HasExpiresIn is false when the server did
	// not say (Salesforce) or gave a lifetime that is not positive, and
	// the token is refreshed only reactively.
	ExpiresIn    int64
	HasExpiresIn bool
	// Extra holds the other members.
	Extra map[string]any
}

// TokenEndpoint classifies a token endpoint response whose body was read
// (through a size limit) by the caller. Exactly one result is non-nil.
//
// Rules (PROTOCOL.md §6): any `error` member means failure whatever the
// status, including Slack's HTTP 200 `{"ok":false,"error":...}` and
// GitHub's form-encoded bodies; vendor codes are mapped through the alias
// table; HTML and other non-OAuth bodies are server errors, never OAuth
// errors; classification follows the error code, not the status.
func TokenEndpoint(status int, header http.Header, body []byte, aliases Aliases) (*TokenResponse, *Error) {
	retryAfter := ParseRetryAfter(header.Get("Retry-After"), time.Now())
	fields, ok := decodeFields(header.Get("Content-Type"), body)
	if !ok {
		e := &Error{Code: "server_error", Status: status, Class: Transient, RetryAfter: retryAfter,
			Description: fmt.Sprintf("non-OAuth response from the token endpoint (HTTP %d, %s)", status, describeContentType(header))}
		if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
			e.Code = "temporarily_unavailable"
		}
		return nil, e
	}
	if e := errorFromFields(status, fields, aliases); e != nil {
		e.RetryAfter = retryAfter
		return nil, e
	}
	if status < 200 || status > 299 {
		// A non-2xx answer without an `error` member.
		e := &Error{Status: status, RetryAfter: retryAfter, Description: fmt.Sprintf("HTTP %d without an OAuth error", status)}
		switch {
		case status == http.StatusUnauthorized:
			e.Code, e.Class = "invalid_client", Permanent
		case status >= 500 || status == http.StatusTooManyRequests:
			e.Code, e.Class = "server_error", Transient
			if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
				e.Code = "temporarily_unavailable"
			}
		case status >= 400:
			e.Code, e.Class = "invalid_request", Rejected
		default:
			e.Code, e.Class = "server_error", Transient
		}
		return nil, e
	}
	return tokenFromFields(status, fields)
}

// decodeFields reads a JSON object or a form-encoded body. ok is false for
// anything else (HTML, plain text, JSON that is not an object).
func decodeFields(contentType string, body []byte) (map[string]any, bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && (mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/plain" || mt == "text/javascript") {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		if err := dec.Decode(&m); err == nil && m != nil {
			return m, true
		}
		return nil, false
	}
	if mt == "application/x-www-form-urlencoded" || (mt == "text/plain" && looksLikeForm(trimmed)) {
		vals, err := url.ParseQuery(string(trimmed))
		if err != nil || len(vals) == 0 {
			return nil, false
		}
		m := make(map[string]any, len(vals))
		for k, v := range vals {
			m[k] = v[0]
		}
		return m, true
	}
	return nil, false
}

// looksLikeForm accepts `k=v&k2=v2` bodies that servers label text/plain.
func looksLikeForm(b []byte) bool {
	if len(b) == 0 || bytes.ContainsAny(b, "<>{} \n") {
		return false
	}
	return bytes.Contains(b, []byte("="))
}

// errorFromFields returns the error an `error` member (or Slack's
// `"ok":false`) signals, or nil.
func errorFromFields(status int, f map[string]any, aliases Aliases) *Error {
	raw, hasErr := f["error"]
	okFalse := f["ok"] == false
	if !hasErr && !okFalse {
		return nil
	}
	code := ""
	switch v := raw.(type) {
	case string:
		code = v
	case map[string]any: // Dropbox-style {"error":{".tag":"..."}}
		code, _ = v[".tag"].(string)
	}
	if code == "" && !okFalse && raw == nil {
		return nil // "error": null is not an error
	}
	e := &Error{Status: status, Extensions: map[string]any{}}
	e.Description, _ = f["error_description"].(string)
	e.URI, _ = f["error_uri"].(string)
	for k, v := range f {
		switch k {
		case "error", "error_description", "error_uri", "ok",
			"access_token", "refresh_token", "id_token":
			// never echo token members
		default:
			e.Extensions[k] = v
		}
	}
	std, vendor := canonical(code, aliases)
	e.VendorCode = vendor
	switch {
	case std != "":
		e.Code = std
	case code == "":
		e.Code = "server_error"
		e.Description = firstNonEmpty(e.Description, "the token endpoint reported failure without an error code")
	default:
		// An unknown vendor code: judge by status, conservatively.
		if status >= 500 || status == http.StatusTooManyRequests {
			e.Code = "server_error"
		} else {
			e.Code = "invalid_request"
		}
	}
	// Servers that report a dead refresh token under another code.
	if (e.Code == "invalid_request" || e.Code == "unauthorized_client") && mentionsDeadRefreshToken(e.Description) {
		if e.VendorCode == "" {
			e.VendorCode = e.Code
		}
		e.Code = "invalid_grant"
	}
	e.Class = standardCodes[e.Code]
	if len(e.Extensions) == 0 {
		e.Extensions = nil
	}
	return e
}

func tokenFromFields(status int, f map[string]any) (*TokenResponse, *Error) {
	t := &TokenResponse{Extra: map[string]any{}}
	t.AccessToken, _ = f["access_token"].(string)
	if t.AccessToken == "" {
		return nil, &Error{Code: "server_error", Status: status, Class: Transient,
			Description: "token response without access_token"}
	}
	// A token the gateway cannot put in an Authorization header would be
	// cached and fail every request: refuse it here, as a server failure
	// (never echoing the value).
	if !isBearerToken(t.AccessToken) {
		return nil, malformedToken(status, "access_token contains characters not allowed in a bearer token (RFC 6750 §2.1)")
	}
	t.TokenType, _ = f["token_type"].(string)
	if t.TokenType != "" && !isHTTPToken(t.TokenType) {
		return nil, malformedToken(status, "token_type is not a token (RFC 6749 §7.1)")
	}
	if t.TokenType == "" || strings.EqualFold(t.TokenType, "bearer") {
		t.TokenType = "Bearer"
	}
	t.RefreshToken, _ = f["refresh_token"].(string)
	if t.RefreshToken != "" && !isVSCHAR(t.RefreshToken) {
		return nil, malformedToken(status, "refresh_token contains characters not allowed in a refresh token (RFC 6749 Appendix A.17)")
	}
	t.Scope, _ = f["scope"].(string)
	t.IDToken, _ = f["id_token"].(string)
	t.IssuedTokenType, _ = f["issued_token_type"].(string)
	if v, ok := f["expires_in"]; ok {
		// A non-positive lifetime says nothing usable: treat it as absent.
		if n, ok := parseSeconds(v); ok && n > 0 {
			t.ExpiresIn, t.HasExpiresIn = n, true
		}
	}
	for k, v := range f {
		switch k {
		case "access_token", "token_type", "refresh_token", "scope", "id_token", "expires_in", "issued_token_type":
		default:
			t.Extra[k] = v
		}
	}
	return t, nil
}

func malformedToken(status int, description string) *Error {
	return &Error{Code: "server_error", Status: status, Class: Transient, Description: description}
}

// isBearerToken reports whether s is a non-empty run of visible ASCII
// (VCHAR, 0x21-0x7E): a lenient reading of RFC 6750 §2.1 b64token that
// still rules out spaces, control characters (CR, LF, NUL, tab) and
// non-ASCII, which would break or split the Authorization header.
func isBearerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// isVSCHAR reports whether s has only VSCHAR (0x20-0x7E), the refresh
// token syntax of RFC 6749 Appendix A.17.
func isVSCHAR(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// isHTTPToken reports whether s is a non-empty RFC 9110 §5.6.2 token, the
// syntax of an authentication scheme such as token_type.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseSeconds accepts a JSON number or a numeric string ("3600"), as
// some servers send.
func parseSeconds(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil && n >= 0 {
			return n, true
		}
		if f, err := x.Float64(); err == nil && f >= 0 && f < 1<<40 {
			return int64(f), true
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil && n >= 0 {
			return n, true
		}
	}
	return 0, false
}

// ParseRetryAfter reads a Retry-After value: delay-seconds or an HTTP
// date (RFC 9110 §10.2.3); 0 when absent, malformed or past. Delays are
// bounded to under a day.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < 86400 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func describeContentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "" {
			return mt
		}
	}
	return "no content type"
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}
