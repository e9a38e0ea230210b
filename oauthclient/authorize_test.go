package oauthclient

import (
	"net/url"
	"strings"
	"testing"
)

func TestAuthorizationRequestURL(t *testing.T) {
	base := AuthorizationRequest{
		Endpoint:      "https://as.example/authorize?tenant=t1",
		ClientID:      "client 1",
		RedirectURI:   "http://127.0.0.1:8080/cb?x=1",
		State:         "st",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Scopes:        []string{"openid", "offline_access"},
		Resource:      "https://api.example/v1",
		Extra: url.Values{
			"access_type": {"offline"}, "prompt": {"consent"},
			// None of these may replace a named parameter.
			"state": {"evil"}, "redirect_uri": {"https://evil.example/cb"}, "response_type": {"token"},
			"code_challenge_method": {"plain"}, "client_id": {"other"}, "scope": {"admin"}, "resource": {"https://evil.example"},
		},
	}
	tests := []struct {
		name    string
		mod     func(*AuthorizationRequest)
		want    url.Values // exact query; nil when an error is expected
		wantErr string
	}{
		{name: "all fields", mod: func(*AuthorizationRequest) {}, want: url.Values{
			"tenant": {"t1"}, "response_type": {"code"}, "client_id": {"client 1"},
			"redirect_uri": {"http://127.0.0.1:8080/cb?x=1"}, "state": {"st"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
			"scope": {"openid offline_access"}, "resource": {"https://api.example/v1"},
			"access_type": {"offline"}, "prompt": {"consent"},
		}},
		{name: "scope, resource and extra omitted", mod: func(r *AuthorizationRequest) {
			r.Endpoint, r.Scopes, r.Resource, r.Extra = "http://localhost:9000/auth", nil, "", nil
		}, want: url.Values{
			"response_type": {"code"}, "client_id": {"client 1"}, "redirect_uri": {"http://127.0.0.1:8080/cb?x=1"},
			"state": {"st"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
		}},
		{name: "endpoint query cannot preset reserved parameters", mod: func(r *AuthorizationRequest) {
			r.Endpoint, r.Extra = "https://as.example/authorize?state=preset&response_type=token&keep=1", nil
		}, want: url.Values{
			"keep": {"1"}, "response_type": {"code"}, "client_id": {"client 1"}, "redirect_uri": {"http://127.0.0.1:8080/cb?x=1"},
			"state": {"st"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
			"scope": {"openid offline_access"}, "resource": {"https://api.example/v1"},
		}},
		{name: "relative endpoint", mod: func(r *AuthorizationRequest) { r.Endpoint = "/authorize" }, wantErr: "absolute"},
		{name: "other scheme", mod: func(r *AuthorizationRequest) { r.Endpoint = "javascript://as.example/x" }, wantErr: "absolute"},
		{name: "no host", mod: func(r *AuthorizationRequest) { r.Endpoint = "https:///authorize" }, wantErr: "absolute"},
		{name: "fragment", mod: func(r *AuthorizationRequest) { r.Endpoint = "https://as.example/authorize#f" }, wantErr: "fragment"},
		{name: "no client_id", mod: func(r *AuthorizationRequest) { r.ClientID = "" }, wantErr: "client_id"},
		{name: "no redirect_uri", mod: func(r *AuthorizationRequest) { r.RedirectURI = "" }, wantErr: "redirect_uri"},
		{name: "no state", mod: func(r *AuthorizationRequest) { r.State = "" }, wantErr: "state"},
		{name: "no code_challenge", mod: func(r *AuthorizationRequest) { r.CodeChallenge = "" }, wantErr: "code_challenge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.mod(&r)
			got, err := r.URL()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("URL() = %q, %v; want error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := url.Parse(r.Endpoint)
			if u.Scheme != want.Scheme || u.Host != want.Host || u.Path != want.Path {
				t.Fatalf("URL() = %q, not at endpoint %q", got, r.Endpoint)
			}
			if q := u.Query(); q.Encode() != tt.want.Encode() {
				t.Fatalf("query\n got %s\nwant %s", q.Encode(), tt.want.Encode())
			}
		})
	}
	// URL must not modify the caller's Extra.
	if base.Extra.Get("state") != "evil" || len(base.Extra) != 9 {
		t.Fatalf("Extra modified: %v", base.Extra)
	}
}

func TestParseAuthorizationResponse(t *testing.T) {
	long := strings.Repeat("a", maxAuthorizationParam+1)
	tests := []struct {
		name    string
		query   string
		want    AuthorizationResponse
		wantErr string
	}{
		{name: "code", query: "code=c0de&state=st&iss=https%3A%2F%2Fas.example",
			want: AuthorizationResponse{Code: "c0de", State: "st", Issuer: "https://as.example"}},
		{name: "code without iss", query: "code=c0de&state=st&other=ignored",
			want: AuthorizationResponse{Code: "c0de", State: "st"}},
		{name: "error", query: "error=access_denied&error_description=The+user+said+no&error_uri=https%3A%2F%2Fas.example%2Fe&state=st&iss=https%3A%2F%2Fas.example",
			want: AuthorizationResponse{Error: "access_denied", ErrorDescription: "The user said no", ErrorURI: "https://as.example/e", State: "st", Issuer: "https://as.example"}},
		{name: "value at the bound", query: "code=" + long[1:],
			want: AuthorizationResponse{Code: long[1:]}},
		{name: "code over the bound", query: "code=" + long + "&state=st", wantErr: "code is over 4096 bytes"},
		{name: "state over the bound", query: "code=c&state=" + long, wantErr: "state is over"},
		{name: "description over the bound", query: "error=x&error_description=" + long, wantErr: "error_description is over"},
		{name: "iss over the bound", query: "code=c&iss=" + long, wantErr: "iss is over"},
		{name: "neither code nor error", query: "state=st", wantErr: "neither code nor error"},
		{name: "empty code", query: "code=&state=st", wantErr: "neither code nor error"},
		{name: "repeated state", query: "code=c&state=a&state=b", wantErr: "2 state parameters"},
		{name: "repeated code", query: "code=a&code=b", wantErr: "2 code parameters"},
		{name: "empty iss", query: "code=c&iss=", wantErr: "empty iss"},
		{name: "control character", query: "code=c&error_description=a%0Ab&error=x", wantErr: "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseAuthorizationResponse(q)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want error with %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "aaaa") {
					t.Fatal("value in error message")
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestCheckIssuer(t *testing.T) {
	const as = "https://as.example"
	tests := []struct {
		name     string
		iss      string
		expected string
		required bool
		ok       bool
	}{
		{"present, equal", as, as, false, true},
		{"present, equal, required", as, as, true, true},
		{"present, different", "https://evil.example", as, false, false},
		{"present, trailing slash added", as + "/", as, false, false},
		{"present, trailing slash missing", as, as + "/", true, false},
		{"present, case differs", "https://AS.example", as, false, false},
		{"present, nothing to compare with", as, "", false, false},
		{"absent, required", "", as, true, false},
		{"absent, optional", "", as, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, resp := range []AuthorizationResponse{
				{Code: "c", State: "s", Issuer: tt.iss},
				{Error: "access_denied", State: "s", Issuer: tt.iss},
			} {
				if err := CheckIssuer(resp, tt.expected, tt.required); (err == nil) != tt.ok {
					t.Fatalf("CheckIssuer(%+v, %q, %v) = %v", resp, tt.expected, tt.required, err)
				}
			}
		})
	}
}

func FuzzParseAuthorizationResponse(f *testing.F) {
	f.Add("code=c0de&state=st&iss=https%3A%2F%2Fas.example")
	f.Add("error=access_denied&error_description=no&state=st")
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw) // keeps the pairs it could parse
		resp, err := ParseAuthorizationResponse(q)
		if err != nil {
			if resp != (AuthorizationResponse{}) {
				t.Fatalf("partial result with error: %+v", resp)
			}
			return
		}
		if resp.Code == "" && resp.Error == "" {
			t.Fatal("accepted a response with neither code nor error")
		}
		for name, v := range map[string]string{
			"code": resp.Code, "state": resp.State, "iss": resp.Issuer,
			"error": resp.Error, "error_description": resp.ErrorDescription, "error_uri": resp.ErrorURI,
		} {
			if len(v) > maxAuthorizationParam || hasControl(v) {
				t.Fatalf("%s accepted unbounded or with control characters", name)
			}
			if v != "" && q.Get(name) != v {
				t.Fatalf("%s = %q, query has %q", name, v, q.Get(name))
			}
			if len(q[name]) > 1 {
				t.Fatalf("accepted repeated %s", name)
			}
		}
		if _, ok := q["iss"]; ok && resp.Issuer == "" {
			t.Fatal("empty iss read as absent")
		}
	})
}
