package normalize

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const jsonCT = "application/json"

// Every row of PROTOCOL.md §6 that concerns a token endpoint, plus the
// RFC 6749 §5.2 baseline.
func TestTokenEndpointErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		wantCode   string
		wantVendor string
		wantClass  Class
	}{
		{"rfc6749 invalid_grant", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_grant","error_description":"expired"}`, "invalid_grant", "", Permanent},
		{"rfc6749 invalid_client 401", 401, hdr("Content-Type", jsonCT), `{"error":"invalid_client"}`, "invalid_client", "", Permanent},
		{"invalid_scope is rejected not dead", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_scope"}`, "invalid_scope", "", Rejected},
		{"rfc8707 invalid_target", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_target"}`, "invalid_target", "", Rejected},
		{"slack 200 ok:false invalid_refresh_token", 200, hdr("Content-Type", "application/json; charset=utf-8"), `{"ok":false,"error":"invalid_refresh_token"}`, "invalid_grant", "invalid_refresh_token", Permanent},
		{"github 200 json bad_refresh_token", 200, hdr("Content-Type", jsonCT), `{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired.","error_uri":"https://docs.github.com/apps"}`, "invalid_grant", "bad_refresh_token", Permanent},
		{"github 200 form bad_verification_code", 200, hdr("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), `error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired.`, "invalid_grant", "bad_verification_code", Permanent},
		{"github 200 incorrect_client_credentials", 200, hdr("Content-Type", jsonCT), `{"error":"incorrect_client_credentials"}`, "invalid_client", "incorrect_client_credentials", Permanent},
		{"expired_refresh_token", 400, hdr("Content-Type", jsonCT), `{"error":"expired_refresh_token"}`, "invalid_grant", "expired_refresh_token", Permanent},
		{"token_expired at token endpoint", 400, hdr("Content-Type", jsonCT), `{"error":"token_expired"}`, "invalid_grant", "token_expired", Permanent},
		{"atlassian 403 invalid_grant", 403, hdr("Content-Type", jsonCT), `{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`, "invalid_grant", "", Permanent},
		{"auth0 403 unauthorized_client refresh_token is invalid", 403, hdr("Content-Type", jsonCT), `{"error":"unauthorized_client","error_description":"refresh_token is invalid"}`, "invalid_grant", "unauthorized_client", Permanent},
		{"400 invalid_request refresh_token is invalid", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_request","error_description":"refresh_token is invalid"}`, "invalid_grant", "invalid_request", Permanent},
		{"400 invalid_request about something else", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_request","error_description":"missing grant_type"}`, "invalid_request", "", Rejected},
		{"entra invalid_grant with error_codes", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082],"trace_id":"t"}`, "invalid_grant", "", Permanent},
		{"vendor code case-insensitive", 400, hdr("Content-Type", jsonCT), `{"error":"INVALID_GRANT"}`, "invalid_grant", "INVALID_GRANT", Permanent},
		{"error member on 500 classified by code", 500, hdr("Content-Type", jsonCT), `{"error":"invalid_grant"}`, "invalid_grant", "", Permanent},
		{"server_error 500", 500, hdr("Content-Type", jsonCT), `{"error":"server_error"}`, "server_error", "", Transient},
		{"cdn html 403", 403, hdr("Content-Type", "text/html"), `<html><body>Access denied | Cloudflare</body></html>`, "server_error", "", Transient},
		{"spa html 200", 200, hdr("Content-Type", "text/html; charset=utf-8"), `<!doctype html><div id="root"></div>`, "server_error", "", Transient},
		{"plain 502", 502, hdr("Content-Type", "text/plain"), `Bad Gateway`, "server_error", "", Transient},
		{"429 without body", 429, hdr("Retry-After", "7"), ``, "temporarily_unavailable", "", Transient},
		{"503 json without error", 503, hdr("Content-Type", jsonCT), `{}`, "temporarily_unavailable", "", Transient},
		{"401 json without error", 401, hdr("Content-Type", jsonCT), `{"message":"Unauthorized"}`, "invalid_client", "", Permanent},
		{"200 without access_token", 200, hdr("Content-Type", jsonCT), `{"token_type":"bearer"}`, "server_error", "", Transient},
		{"unknown vendor code 400", 400, hdr("Content-Type", jsonCT), `{"error":"weird_thing"}`, "invalid_request", "weird_thing", Rejected},
		{"dropbox shaped error object", 400, hdr("Content-Type", jsonCT), `{"error":{".tag":"invalid_grant"},"error_summary":"invalid_grant/"}`, "invalid_grant", "", Permanent},
		{"ok:false without error", 200, hdr("Content-Type", jsonCT), `{"ok":false}`, "server_error", "", Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, e := TokenEndpoint(tt.status, tt.header, []byte(tt.body), nil)
			if tok != nil || e == nil {
				t.Fatalf("got token %+v, want error", tok)
			}
			if e.Code != tt.wantCode || e.VendorCode != tt.wantVendor || e.Class != tt.wantClass {
				t.Fatalf("got code=%q vendor=%q class=%v, want %q %q %v", e.Code, e.VendorCode, e.Class, tt.wantCode, tt.wantVendor, tt.wantClass)
			}
			if !IsStandard(e.Code) {
				t.Fatalf("non-standard code %q", e.Code)
			}
		})
	}
}

func TestTokenEndpointSuccess(t *testing.T) {
	tok, e := TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(`{"access_token":"A","token_type":"bearer","expires_in":"3600","refresh_token":"R","scope":"a b","x":1}`), nil)
	if e != nil {
		t.Fatal(e)
	}
	if tok.AccessToken != "A" || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 || !tok.HasExpiresIn || tok.RefreshToken != "R" || tok.Scope != "a b" || tok.Extra["x"] == nil {
		t.Fatalf("%+v", tok)
	}
	// Salesforce: no expires_in.
	tok, e = TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(`{"access_token":"A","token_type":"Bearer","instance_url":"https://x"}`), nil)
	if e != nil || tok.HasExpiresIn {
		t.Fatalf("%+v %v", tok, e)
	}
	// GitHub form-encoded success (when Accept was ignored).
	tok, e = TokenEndpoint(200, hdr("Content-Type", "application/x-www-form-urlencoded"), []byte(`access_token=A&scope=repo&token_type=bearer`), nil)
	if e != nil || tok.AccessToken != "A" {
		t.Fatalf("%+v %v", tok, e)
	}
}

func TestCustomAliasAndRetryAfter(t *testing.T) {
	_, e := TokenEndpoint(400, hdr("Content-Type", jsonCT), []byte(`{"error":"grant_gone"}`), Aliases{"grant_gone": "invalid_grant"})
	if e.Code != "invalid_grant" || e.Class != Permanent {
		t.Fatalf("%+v", e)
	}
	_, e = TokenEndpoint(429, hdr("Retry-After", "7"), nil, nil)
	if e.RetryAfter != 7*time.Second {
		t.Fatalf("retry after %v", e.RetryAfter)
	}
	when := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	_, e = TokenEndpoint(503, hdr("Retry-After", when), nil, nil)
	if e.RetryAfter < 80*time.Second || e.RetryAfter > 91*time.Second {
		t.Fatalf("retry after date %v", e.RetryAfter)
	}
}

func TestErrorNeverEchoesTokens(t *testing.T) {
	_, e := TokenEndpoint(400, hdr("Content-Type", jsonCT), []byte(`{"error":"invalid_grant","refresh_token":"SECRET-RT","access_token":"SECRET-AT"}`), nil)
	if b := string(ErrorJSON(e)); strings.Contains(b, "SECRET") {
		t.Fatalf("token echoed: %s", b)
	}
}

// Malformed token values are server failures, never cached tokens, and
// the error never carries the value.
func TestTokenEndpointMalformedTokens(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name string
		ct   string
		body string
	}{
		{"access_token with CRLF", jsonCT, `{"access_token":"SECRET\r\nX-Injected: 1","expires_in":0}`},
		{"access_token with LF", jsonCT, `{"access_token":"SECRET\nmore"}`},
		{"access_token with CR", jsonCT, `{"access_token":"SECRET\r"}`},
		{"access_token with NUL", jsonCT, `{"access_token":"SECRET\u0000","expires_in":-1}`},
		{"access_token with tab", jsonCT, `{"access_token":"SECRET\tx"}`},
		{"access_token with space", jsonCT, `{"access_token":"SECRET x"}`},
		{"access_token only spaces", jsonCT, `{"access_token":"   "}`},
		{"access_token with DEL", jsonCT, `{"access_token":"SECRET\u007f"}`},
		{"access_token non-ASCII", jsonCT, `{"access_token":"SECRETé"}`},
		{"access_token empty", jsonCT, `{"access_token":""}`},
		{"form access_token with CRLF", form, `access_token=SECRET%0D%0Ax&token_type=bearer`},
		{"form access_token with NUL", form, `access_token=SECRET%00`},
		{"refresh_token with LF", jsonCT, `{"access_token":"A","refresh_token":"SECRET\nx"}`},
		{"refresh_token with NUL", jsonCT, `{"access_token":"A","refresh_token":"SECRET\u0000"}`},
		{"refresh_token with tab", jsonCT, `{"access_token":"A","refresh_token":"SECRET\t"}`},
		{"refresh_token non-ASCII", jsonCT, `{"access_token":"A","refresh_token":"SECRET\u00a0"}`},
		{"token_type with space", jsonCT, `{"access_token":"A","token_type":"Bearer x"}`},
		{"token_type with CRLF", jsonCT, `{"access_token":"A","token_type":"Bearer\r\nX: y"}`},
		{"token_type with NUL", jsonCT, `{"access_token":"A","token_type":"Bearer\u0000"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, e := TokenEndpoint(200, hdr("Content-Type", tt.ct), []byte(tt.body), nil)
			if tok != nil || e == nil {
				t.Fatalf("got token %+v, want error", tok)
			}
			if e.Code != "server_error" || e.Class != Transient || e.Status != 200 {
				t.Fatalf("got code=%q class=%v status=%d", e.Code, e.Class, e.Status)
			}
			if e.Description == "" || strings.Contains(e.Description, "SECRET") || strings.Contains(string(ErrorJSON(e)), "SECRET") {
				t.Fatalf("description %q", e.Description)
			}
		})
	}
	_, e := TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(`{"access_token":"SECRET\r\n"}`), nil)
	if want := "access_token contains characters not allowed in a bearer token (RFC 6750 §2.1)"; e == nil || e.Description != want {
		t.Fatalf("got %+v, want description %q", e, want)
	}
}

func TestTokenEndpointValidTokens(t *testing.T) {
	tests := []struct {
		name, body             string
		access, refresh, ttype string
	}{
		{"b64token", `{"access_token":"abc-._~+/XYZ09=="}`, "abc-._~+/XYZ09==", "", "Bearer"},
		{"jwt", `{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}`, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "", "Bearer"},
		{"lenient VCHAR", `{"access_token":"a!\"#$%&'()*,:;<>?@[\\]^{|}"}`, "a!\"#$%&'()*,:;<>?@[\\]^{|}", "", "Bearer"},
		{"refresh_token with space (VSCHAR)", `{"access_token":"A","refresh_token":"r t ~"}`, "A", "r t ~", "Bearer"},
		{"dpop token_type", `{"access_token":"A","token_type":"DPoP"}`, "A", "", "DPoP"},
		{"empty token_type", `{"access_token":"A","token_type":""}`, "A", "", "Bearer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, e := TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(tt.body), nil)
			if e != nil {
				t.Fatal(e)
			}
			if tok.AccessToken != tt.access || tok.RefreshToken != tt.refresh || tok.TokenType != tt.ttype {
				t.Fatalf("%+v", tok)
			}
		})
	}
}

func TestTokenEndpointExpiresIn(t *testing.T) {
	tests := []struct {
		expiresIn string
		want      int64
		has       bool
	}{
		{`3600`, 3600, true},
		{`"3600"`, 3600, true},
		{`" 60 "`, 60, true},
		{`1`, 1, true},
		{`90.7`, 90, true},
		{`0`, 0, false},
		{`"0"`, 0, false},
		{`-1`, 0, false},
		{`"-3600"`, 0, false},
		{`-0.5`, 0, false},
		{`0.5`, 0, false},
		{`"soon"`, 0, false},
		{`null`, 0, false},
		{`true`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.expiresIn, func(t *testing.T) {
			tok, e := TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(`{"access_token":"A","expires_in":`+tt.expiresIn+`}`), nil)
			if e != nil {
				t.Fatal(e)
			}
			if tok.ExpiresIn != tt.want || tok.HasExpiresIn != tt.has {
				t.Fatalf("got %d/%v, want %d/%v", tok.ExpiresIn, tok.HasExpiresIn, tt.want, tt.has)
			}
		})
	}
	for _, body := range []string{`access_token=A&expires_in=0`, `access_token=A&expires_in=-5`} {
		tok, e := TokenEndpoint(200, hdr("Content-Type", "application/x-www-form-urlencoded"), []byte(body), nil)
		if e != nil || tok.HasExpiresIn || tok.ExpiresIn != 0 {
			t.Fatalf("%s: %+v %v", body, tok, e)
		}
	}
}

// An RFC 8693 answer (the ID-JAG of PROTOCOL.md §11) is a success: token
// type N_A is kept as sent, and issued_token_type is surfaced.
func TestTokenExchangeResponse(t *testing.T) {
	body := `{"access_token":"eyJhbGciOiJFUzI1NiJ9.e30.c2ln","issued_token_type":"urn:ietf:params:oauth:token-type:id-jag","token_type":"N_A","expires_in":300}`
	tok, e := TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(body), nil)
	if e != nil {
		t.Fatalf("error %v", e)
	}
	if tok.TokenType != "N_A" || tok.IssuedTokenType != "urn:ietf:params:oauth:token-type:id-jag" || tok.ExpiresIn != 300 || !tok.HasExpiresIn {
		t.Fatalf("token %+v", tok)
	}
	if _, ok := tok.Extra["issued_token_type"]; ok {
		t.Fatal("issued_token_type also in Extra")
	}
	tok, e = TokenEndpoint(200, hdr("Content-Type", jsonCT), []byte(`{"access_token":"a","token_type":"bearer"}`), nil)
	if e != nil || tok.IssuedTokenType != "" || tok.TokenType != "Bearer" {
		t.Fatalf("ordinary response: %+v %v", tok, e)
	}
}
