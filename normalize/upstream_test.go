package normalize

import (
	"encoding/json"
	"net/http"
	"testing"
)

// The PROTOCOL.md §6 rows about protected resources, and RFC 6750 §3.
func TestUpstream(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		header  http.Header
		body    string
		presets []string
		want    UpstreamVerdict
	}{
		{"bearer invalid_token", 401, hdr("WWW-Authenticate", `Bearer error="invalid_token"`), ``, nil, UpstreamVerdict{InvalidToken: true, Code: "invalid_token"}},
		{"bare 401 json-rpc body (MCP)", 401, hdr("Content-Type", jsonCT), `{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"Unauthorized"}}`, nil, UpstreamVerdict{InvalidToken: true, Code: "invalid_token", VendorCode: "jsonrpc_error"}},
		{"dropbox expired_access_token", 401, hdr("Content-Type", jsonCT), `{"error_summary":"expired_access_token/.","error":{".tag":"expired_access_token"}}`, nil, UpstreamVerdict{InvalidToken: true, Code: "invalid_token", VendorCode: "expired_access_token"}},
		{"salesforce INVALID_SESSION_ID", 401, hdr("Content-Type", jsonCT), `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`, nil, UpstreamVerdict{InvalidToken: true, Code: "invalid_token", VendorCode: "INVALID_SESSION_ID"}},
		{"403 insufficient_scope quoted", 403, hdr("WWW-Authenticate", `Bearer error="insufficient_scope", scope="files:read files:write"`), ``, nil, UpstreamVerdict{InsufficientScope: true, Scope: "files:read files:write", Code: "insufficient_scope"}},
		{"403 insufficient_scope unquoted", 403, hdr("WWW-Authenticate", `Bearer error=insufficient_scope, scope=admin`), ``, nil, UpstreamVerdict{InsufficientScope: true, Scope: "admin", Code: "insufficient_scope"}},
		{"403 after a Negotiate challenge", 403, http.Header{"Www-Authenticate": {`Negotiate YII=`, `Bearer realm="x", error="insufficient_scope", scope="w"`}}, ``, nil, UpstreamVerdict{InsufficientScope: true, Scope: "w", Code: "insufficient_scope"}},
		{"403 other reason is not step-up", 403, hdr("Content-Type", "text/html"), `<html>forbidden</html>`, nil, UpstreamVerdict{}},
		{"403 that only mentions insufficient_scope in description", 403, hdr("WWW-Authenticate", `Bearer error="access_denied", error_description="not insufficient_scope"`), ``, nil, UpstreamVerdict{}},
		{"slack token_expired needs the preset", 200, hdr("Content-Type", jsonCT), `{"ok":false,"error":"token_expired"}`, nil, UpstreamVerdict{}},
		{"slack token_expired", 200, hdr("Content-Type", jsonCT), `{"ok":false,"error":"token_expired"}`, []string{"slack"}, UpstreamVerdict{InvalidToken: true, Code: "invalid_token", VendorCode: "token_expired"}},
		{"slack invalid_auth", 200, hdr("Content-Type", jsonCT), `{"ok":false,"error":"invalid_auth"}`, []string{"slack"}, UpstreamVerdict{InvalidToken: true, Code: "invalid_token", VendorCode: "invalid_auth"}},
		{"slack missing_scope", 200, hdr("Content-Type", jsonCT), `{"ok":false,"error":"missing_scope","needed":"chat:write,files:read","provided":"chat:read"}`, []string{"slack"}, UpstreamVerdict{InsufficientScope: true, Scope: "chat:write files:read", Code: "insufficient_scope", VendorCode: "missing_scope"}},
		{"slack ok true", 200, hdr("Content-Type", jsonCT), `{"ok":true}`, []string{"slack"}, UpstreamVerdict{}},
		{"slack other error", 200, hdr("Content-Type", jsonCT), `{"ok":false,"error":"channel_not_found"}`, []string{"slack"}, UpstreamVerdict{}},
		{"plain 200", 200, hdr("Content-Type", jsonCT), `{"result":1}`, nil, UpstreamVerdict{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Upstream(tt.status, tt.header, []byte(tt.body), tt.presets); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	success := []byte(`{"access_token":"A","token_type":"Bearer","expires_in":3600}`)
	if st, b, changed := Rewrite(200, hdr("Content-Type", jsonCT), success, nil); changed || st != 200 || string(b) != string(success) {
		t.Fatal("a success must pass unchanged")
	}
	if _, _, changed := Rewrite(200, http.Header{}, nil, nil); changed {
		t.Fatal("an empty 200 (revocation success) must pass unchanged")
	}
	if _, _, changed := Rewrite(201, hdr("Content-Type", jsonCT), []byte(`{"client_id":"x"}`), nil); changed {
		t.Fatal("a registration success must pass unchanged")
	}
	cases := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		wantStatus int
		wantCode   string
	}{
		{"slack 200 error", 200, hdr("Content-Type", jsonCT), `{"ok":false,"error":"invalid_refresh_token"}`, 400, "invalid_grant"},
		{"github form 200 error", 200, hdr("Content-Type", "application/x-www-form-urlencoded"), `error=incorrect_client_credentials`, 401, "invalid_client"},
		{"403 invalid_grant", 403, hdr("Content-Type", jsonCT), `{"error":"invalid_grant"}`, 400, "invalid_grant"},
		{"html 502", 502, hdr("Content-Type", "text/html"), `<html>oops</html>`, 502, "server_error"},
		{"html 403", 403, hdr("Content-Type", "text/html"), `<html>denied</html>`, 503, "server_error"},
		{"entra keeps extensions", 400, hdr("Content-Type", jsonCT), `{"error":"invalid_grant","error_codes":[700082]}`, 400, "invalid_grant"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, b, changed := Rewrite(c.status, c.header, []byte(c.body), nil)
			if !changed || st != c.wantStatus {
				t.Fatalf("status %d changed %v, want %d", st, changed, c.wantStatus)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil || m["error"] != c.wantCode {
				t.Fatalf("body %s", b)
			}
			if c.name == "entra keeps extensions" && m["error_codes"] == nil {
				t.Fatalf("extensions dropped: %s", b)
			}
		})
	}
}

func TestBearerChallengeQuotes(t *testing.T) {
	got := BearerChallenge("insufficient_scope", `say "hi"`+"\n", "a b", "")
	want := `Bearer error="insufficient_scope", error_description="say \"hi\"?", scope="a b"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
