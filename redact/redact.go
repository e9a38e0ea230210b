// Package redact is the one redaction helper for everything the gateway
// logs or puts in an error: Authorization, DPoP and Cookie headers;
// access, refresh and ID tokens; client secrets and assertions; and
// `code`, `code_verifier` and `state` in URLs and bodies (PROTOCOL.md §8).
package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Redacted replaces every secret value.
const Redacted = "REDACTED"

var secretHeaders = []string{"Authorization", "Proxy-Authorization", "Dpop", "Cookie", "Set-Cookie"}

// secretParams are parameter and member names whose values are secret.
var secretParams = map[string]bool{
	"code": true, "code_verifier": true, "state": true,
	"access_token": true, "refresh_token": true, "id_token": true, "token": true,
	"client_secret": true, "client_assertion": true, "assertion": true,
	"subject_token": true, "actor_token": true, "password": true, "device_code": true,
}

func isSecretName(name string) bool {
	n := strings.ToLower(name)
	return secretParams[n] || strings.HasSuffix(n, "_token") || strings.Contains(n, "secret") || strings.Contains(n, "password")
}

// Header returns a copy of h with secret header values replaced.
func Header(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range secretHeaders {
		if vs, ok := out[http.CanonicalHeaderKey(k)]; ok {
			for i := range vs {
				vs[i] = Redacted
			}
		}
	}
	return out
}

// URL returns raw with secret query parameters and any userinfo password
// redacted. Input that does not parse is replaced entirely.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "REDACTED-URL"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = Form(u.RawQuery)
	}
	if u.Fragment != "" {
		// Implicit-flow style fragments carry tokens.
		u.Fragment = Form(u.Fragment)
	}
	return u.String()
}

// Form redacts secret parameters of an application/x-www-form-urlencoded
// string; unparseable input is replaced entirely.
func Form(body string) string {
	vals, err := url.ParseQuery(body)
	if err != nil {
		return Redacted
	}
	changed := false
	for k, vs := range vals {
		if isSecretName(k) {
			for i := range vs {
				vs[i] = Redacted
			}
			changed = true
		}
	}
	if !changed {
		return body
	}
	return vals.Encode()
}

// JSON redacts secret members of JSON objects, recursively. Input that is
// not JSON is replaced entirely.
func JSON(body []byte) []byte {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return []byte(`"` + Redacted + `"`)
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return []byte(`"` + Redacted + `"`)
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if isSecretName(k) {
				x[k] = Redacted
			} else {
				x[k] = redactValue(val)
			}
		}
	case []any:
		for i := range x {
			x[i] = redactValue(x[i])
		}
	}
	return v
}

// Token returns a fingerprint of a secret that is safe to log and lets
// two log lines be correlated: "sha256:" and the first 8 hex digits.
func Token(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// Scrub replaces every occurrence of each known secret in s. It is the
// last line of defence for server-supplied text (an error_description
// that echoes the refresh token it rejected).
func Scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}
