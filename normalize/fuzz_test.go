package normalize

import (
	"encoding/json"
	"net/http"
	"testing"
)

var fuzzContentTypes = []string{"application/json", "application/x-www-form-urlencoded", "text/html", "text/plain", ""}

func FuzzTokenEndpoint(f *testing.F) {
	f.Add(400, 0, `{"error":"invalid_grant"}`)
	f.Add(200, 0, `{"ok":false,"error":"invalid_refresh_token"}`)
	f.Add(200, 1, `error=bad_refresh_token&error_description=x`)
	f.Add(502, 2, `<html></html>`)
	f.Add(200, 0, `{"access_token":"a","expires_in":"12"}`)
	f.Add(400, 0, `{"error":{".tag":"x"}}`)
	f.Fuzz(func(t *testing.T, status, ct int, body string) {
		h := http.Header{"Content-Type": {fuzzContentTypes[abs(ct)%len(fuzzContentTypes)]}}
		tok, e := TokenEndpoint(status, h, []byte(body), nil)
		if (tok == nil) == (e == nil) {
			t.Fatalf("exactly one result expected: %v %v", tok, e)
		}
		if e != nil && !IsStandard(e.Code) {
			t.Fatalf("non-standard code %q", e.Code)
		}
		if tok != nil && tok.AccessToken == "" {
			t.Fatal("token without access_token")
		}
		if tok != nil && !isBearerToken(tok.AccessToken) {
			t.Fatalf("access_token with characters outside VCHAR: %q", tok.AccessToken)
		}
		if tok != nil && !isVSCHAR(tok.RefreshToken) {
			t.Fatalf("refresh_token with characters outside VSCHAR: %q", tok.RefreshToken)
		}
		if tok != nil && !isHTTPToken(tok.TokenType) {
			t.Fatalf("token_type %q is not a token", tok.TokenType)
		}
		if tok != nil && (tok.HasExpiresIn != (tok.ExpiresIn > 0)) {
			t.Fatalf("expires_in %d with HasExpiresIn %v", tok.ExpiresIn, tok.HasExpiresIn)
		}
	})
}

func FuzzUpstream(f *testing.F) {
	f.Add(401, `Bearer error="invalid_token"`, `{"error":{".tag":"expired_access_token"}}`)
	f.Add(403, `Bearer error=insufficient_scope, scope="a b"`, ``)
	f.Add(200, ``, `{"ok":false,"error":"missing_scope","needed":"a,b"}`)
	f.Add(401, ``, `[{"errorCode":"INVALID_SESSION_ID"}]`)
	f.Fuzz(func(t *testing.T, status int, challenge, body string) {
		v := Upstream(status, http.Header{"Www-Authenticate": {challenge}}, []byte(body), []string{PresetSlack})
		if v.InvalidToken && v.InsufficientScope {
			t.Fatal("both verdicts")
		}
		if v.InsufficientScope && v.Code != "insufficient_scope" {
			t.Fatalf("code %q", v.Code)
		}
	})
}

func FuzzRewrite(f *testing.F) {
	f.Add(200, 0, `{"ok":false,"error":"invalid_refresh_token"}`)
	f.Add(403, 0, `{"error":"invalid_grant","error_codes":[1]}`)
	f.Add(200, 1, `error=incorrect_client_credentials`)
	f.Add(500, 2, `<html>`)
	f.Fuzz(func(t *testing.T, status, ct int, body string) {
		h := http.Header{"Content-Type": {fuzzContentTypes[abs(ct)%len(fuzzContentTypes)]}}
		st, out, changed := Rewrite(status, h, []byte(body), nil)
		if !changed {
			if string(out) != body || st != status {
				t.Fatal("unchanged response was altered")
			}
			return
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("rewritten body is not JSON: %s", out)
		}
		if code, _ := m["error"].(string); !IsStandard(code) {
			t.Fatalf("rewritten code %q", m["error"])
		}
		if st < 400 {
			t.Fatalf("rewritten status %d", st)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // math.MinInt
			return 0
		}
		return -n
	}
	return n
}
