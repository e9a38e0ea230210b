package normalize

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Rewrite turns an authorization server's error response (token,
// revocation or registration endpoint) into RFC 6749 §5.2 form, for the
// oauth_normalize handler. Successful responses are left alone
// (changed=false) so they pass byte-identical.
//
// An error is any response with an `error` member whatever its status, or
// any 4xx/5xx. The result is status 400 (401 for invalid_client, so the
// caller adds a Basic challenge; 5xx/429 server failures keep a 5xx status
// so clients retry) and a JSON body with the standard code, the
// description, and the server's extension members.
func Rewrite(status int, header http.Header, body []byte, aliases Aliases) (newStatus int, newBody []byte, changed bool) {
	fields, ok := decodeFields(header.Get("Content-Type"), body)
	isError := status >= 400
	if ok {
		if _, has := fields["error"]; has || fields["ok"] == false {
			isError = true
		}
	}
	if !isError {
		return status, body, false
	}
	_, e := TokenEndpoint(status, header, body, aliases)
	if e == nil {
		// A 4xx carrying a token: leave it alone rather than guess.
		return status, body, false
	}
	newStatus = http.StatusBadRequest
	switch {
	case e.Code == "invalid_client":
		newStatus = http.StatusUnauthorized
	case e.Class == Transient:
		newStatus = http.StatusServiceUnavailable
		if status >= 500 && status <= 599 {
			newStatus = status
		}
	}
	return newStatus, ErrorJSON(e), true
}

// ErrorJSON renders e as an RFC 6749 §5.2 JSON object: error,
// error_description, error_uri, and e's extension members.
func ErrorJSON(e *Error) []byte {
	m := make(map[string]any, 3+len(e.Extensions))
	for k, v := range e.Extensions {
		m[k] = v
	}
	m["error"] = e.Code
	if e.Description != "" {
		m["error_description"] = e.Description
	}
	if e.URI != "" {
		m["error_uri"] = e.URI
	}
	b, err := json.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": e.Code})
	}
	return b
}

// BearerChallenge builds a `WWW-Authenticate: Bearer` value (RFC 6750 §3)
// with the given parameters; empty ones are left out.
func BearerChallenge(code, description, scope, resourceMetadata string) string {
	var parts []string
	add := func(name, val string) {
		if val != "" {
			parts = append(parts, name+"="+quote(val))
		}
	}
	add("error", code)
	add("error_description", description)
	add("scope", scope)
	add("resource_metadata", resourceMetadata)
	if len(parts) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(parts, ", ")
}

// quote makes an RFC 9110 quoted-string. Characters RFC 6750 §3 forbids
// in error_description (controls, non-ASCII) are replaced.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
