// Package redact is the one redaction helper for everything the gateway
// logs or puts in an error: Authorization, DPoP and Cookie headers;
// access, refresh and ID tokens; client secrets and assertions; and
// `code`, `code_verifier` and `state` in URLs and bodies (PROTOCOL.md §8).
package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
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

// minScrubLen is the shortest secret Scrub looks for: shorter strings
// would match ordinary text.
const minScrubLen = 4

// Scrub replaces every occurrence of each known secret in s, and of the
// encoded forms a server may echo (see Forms). It is the last line of
// defence for server-supplied text (an error_description that echoes the
// refresh token it rejected, or the Basic header it was sent). Secrets
// shorter than 4 bytes are ignored.
func Scrub(s string, secrets ...string) string {
	var forms []string
	seen := map[string]bool{}
	for _, sec := range secrets {
		for _, f := range Forms(sec) {
			if !seen[f] {
				seen[f] = true
				forms = append(forms, f)
			}
		}
	}
	// Longest first, so a form that contains another (padded base64
	// over unpadded, an escaped form over the plain one) goes whole.
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, Redacted)
	}
	return s
}

// Forms returns secret and the encodings of it that end up in requests
// and may be echoed back: form and path escaping, and standard and
// URL-safe base64, padded and unpadded. It returns nil for a secret
// shorter than 4 bytes.
func Forms(secret string) []string {
	if len(secret) < minScrubLen {
		return nil
	}
	b := []byte(secret)
	return []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
}

// BasicCredentials is the HTTP Basic credentials value (without the
// "Basic " scheme) for a client id and secret, built the way RFC 6749
// §2.3.1 asks: each form-urlencoded, then joined with ':' and base64
// encoded.
func BasicCredentials(clientID, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID) + ":" + url.QueryEscape(secret)))
}

// ClientSecretForms returns the strings to pass to Scrub for a client
// secret: the secret itself (Scrub adds its encodings) and the Basic
// credentials values built from the client id and the secret, both the
// RFC 6749 §2.3.1 one and the plain base64 of "id:secret" other clients
// send. The base64 of the secret alone does not appear inside a Basic
// value, which is why those are listed whole. Nil for an empty secret.
func ClientSecretForms(clientID, secret string) []string {
	if secret == "" {
		return nil
	}
	return []string{
		secret,
		BasicCredentials(clientID, secret),
		base64.StdEncoding.EncodeToString([]byte(clientID + ":" + secret)),
	}
}
