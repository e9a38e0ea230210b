package oauthclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
)

func TestRegister(t *testing.T) {
	const iat = "initial-access-token-0123456789"
	type seen struct {
		method, contentType, accept, auth, ua string
		body                                  map[string]any
	}
	tests := []struct {
		name      string
		token     string
		md        ClientMetadata
		status    int
		header    map[string]string
		answer    string
		want      *RegisteredClient
		wantCode  string
		wantClass normalize.Class
		transport bool   // a *TransportError
		forbidden string // must not appear in the error
	}{
		{name: "201 confidential client", token: iat,
			md:     ClientMetadata{ClientName: "gw", RedirectURIs: []string{"https://gw.example/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}, TokenEndpointAuthMethod: AuthBasic},
			status: http.StatusCreated,
			answer: `{"client_id":"s6BhdRkqt3","client_secret":"cf136dc3c1fc93f31185e5885805d","client_id_issued_at":2893256800,"client_secret_expires_at":2893276800,"registration_access_token":"this.is.an.access.token","registration_client_uri":"https://as.example/register/s6BhdRkqt3","token_endpoint_auth_method":"client_secret_basic","client_name":"gw"}`,
			want: &RegisteredClient{ClientID: "s6BhdRkqt3", ClientSecret: "cf136dc3c1fc93f31185e5885805d", ClientIDIssuedAt: 2893256800, ClientSecretExpiresAt: 2893276800,
				RegistrationAccessToken: "this.is.an.access.token", RegistrationClientURI: "https://as.example/register/s6BhdRkqt3", TokenEndpointAuthMethod: "client_secret_basic"}},
		{name: "200 public client, no secret, no token sent",
			md:     ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/cb"}, TokenEndpointAuthMethod: AuthNone},
			status: http.StatusOK, answer: `{"client_id":"pub-1","token_endpoint_auth_method":"none","client_id_issued_at":"1700000000"}`,
			want: &RegisteredClient{ClientID: "pub-1", TokenEndpointAuthMethod: "none", ClientIDIssuedAt: 1700000000}},
		{name: "400 invalid_redirect_uri", status: http.StatusBadRequest,
			answer:   `{"error":"invalid_redirect_uri","error_description":"The redirection URI http://sketchy.example.com is not allowed by this server."}`,
			wantCode: "invalid_redirect_uri", wantClass: normalize.Permanent},
		{name: "400 echoes the initial access token and a secret", token: iat, status: http.StatusBadRequest,
			answer:   `{"error":"invalid_client_metadata","error_description":"token ` + iat + ` may not register; would have issued client_secret=sekrit-value-42","client_secret":"sekrit-value-42","trace":"Bearer ` + iat + `"}`,
			wantCode: "invalid_client_metadata", wantClass: normalize.Permanent, forbidden: iat + "|sekrit-value-42"},
		{name: "401 without body", token: iat, status: http.StatusUnauthorized,
			wantCode: "invalid_token", wantClass: normalize.Permanent},
		{name: "503 transient with Retry-After", status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "7", "Content-Type": "text/html"},
			answer: `<html>down</html>`, wantCode: "temporarily_unavailable", wantClass: normalize.Transient},
		{name: "500 with an error member", status: http.StatusInternalServerError,
			answer: `{"error":"server_error"}`, wantCode: "server_error", wantClass: normalize.Transient},
		{name: "429", status: http.StatusTooManyRequests, answer: `{"error":"slow_down"}`, wantCode: "slow_down", wantClass: normalize.Transient},
		{name: "201 without client_id", status: http.StatusCreated, answer: `{"client_secret":"x"}`,
			wantCode: "server_error", wantClass: normalize.Transient},
		{name: "200 with an error member", status: http.StatusOK, answer: `{"error":"invalid_software_statement"}`,
			wantCode: "invalid_software_statement", wantClass: normalize.Permanent},
		{name: "oversize body", status: http.StatusCreated, answer: `{"client_id":"` + strings.Repeat("x", 2048) + `"}`, transport: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got seen
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = seen{method: r.Method, contentType: r.Header.Get("Content-Type"), accept: r.Header.Get("Accept"), auth: r.Header.Get("Authorization"), ua: r.Header.Get("User-Agent")}
				b, _ := io.ReadAll(r.Body)
				_ = json.Unmarshal(b, &got.body)
				w.Header().Set("Content-Type", "application/json")
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			c := &Client{MaxBodyBytes: 1024, UserAgent: "gw-test"}
			rc, err := c.Register(context.Background(), srv.URL+"/register", tt.md, tt.token)
			if got.method != http.MethodPost || got.contentType != "application/json" || got.accept != "application/json" || got.ua != "gw-test" {
				t.Fatalf("request: %+v", got)
			}
			if wantAuth := map[bool]string{true: "Bearer " + tt.token, false: ""}[tt.token != ""]; got.auth != wantAuth {
				t.Fatalf("Authorization = %q, want %q", got.auth, wantAuth)
			}
			if ru, ok := got.body["redirect_uris"].([]any); !ok || len(ru) != len(tt.md.RedirectURIs) {
				t.Fatalf("redirect_uris sent as %v", got.body["redirect_uris"])
			}
			switch {
			case tt.want != nil:
				if err != nil || *rc != *tt.want {
					t.Fatalf("got %+v, %v; want %+v", rc, err, tt.want)
				}
				if tt.md.ClientName != "" && got.body["client_name"] != tt.md.ClientName {
					t.Fatalf("metadata sent: %v", got.body)
				}
			case tt.transport:
				var te *TransportError
				if !errors.As(err, &te) || !te.Transient() || !strings.Contains(err.Error(), "registration endpoint") {
					t.Fatalf("want *TransportError, got %v", err)
				}
			default:
				var oe *Error
				if !errors.As(err, &oe) || rc != nil {
					t.Fatalf("want *Error, got %+v, %v", rc, err)
				}
				if oe.Err.Code != tt.wantCode || oe.Err.Class != tt.wantClass || oe.Err.Status != tt.status {
					t.Fatalf("got %s/%s/%d, want %s/%s/%d: %v", oe.Err.Code, oe.Err.Class, oe.Err.Status, tt.wantCode, tt.wantClass, tt.status, err)
				}
				if !strings.Contains(err.Error(), "registration endpoint") {
					t.Fatalf("message: %v", err)
				}
				if tt.header["Retry-After"] == "7" && oe.RetryAfterDuration() != 7*time.Second {
					t.Fatalf("Retry-After: %v", oe.RetryAfterDuration())
				}
				ext, _ := json.Marshal(oe.Err.Extensions)
				for _, f := range strings.Split(tt.forbidden, "|") {
					if f != "" && (strings.Contains(err.Error(), f) || strings.Contains(string(ext), f)) {
						t.Fatalf("%q leaked: %v %s", f, err, ext)
					}
				}
				if tt.forbidden != "" && !strings.Contains(err.Error(), "REDACTED") {
					t.Fatalf("nothing redacted: %v", err)
				}
			}
		})
	}
}

func TestRegisterDoesNotFollowRedirects(t *testing.T) {
	hit := false
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	_, err := (&Client{}).Register(context.Background(), redirect.URL, ClientMetadata{}, "initial-access-token-0123456789")
	var oe *Error
	if hit || !errors.As(err, &oe) || !oe.Transient() {
		t.Fatalf("redirect followed (%v) or accepted: %v", hit, err)
	}
}

func TestRegisteredClientExpired(t *testing.T) {
	now := time.Unix(2000, 0)
	tests := []struct {
		exp  int64
		want bool
	}{{0, false}, {1999, true}, {2000, true}, {2001, false}}
	for _, tt := range tests {
		if got := (&RegisteredClient{ClientSecretExpiresAt: tt.exp}).Expired(now); got != tt.want {
			t.Errorf("Expired(exp=%d) = %v", tt.exp, got)
		}
	}
	if (*RegisteredClient)(nil).Expired(now) {
		t.Error("nil client expired")
	}
}

// SEP-837: application_type is "native" only for loopback redirect URIs.
func TestApplicationTypeFor(t *testing.T) {
	for _, c := range []struct {
		uris []string
		want string
	}{
		{[]string{"https://gw.example.com/mcp/.oauth/callback"}, "web"},
		{[]string{"http://127.0.0.1:9400/cb"}, "native"},
		{[]string{"http://[::1]:9400/cb"}, "native"},
		{[]string{"http://localhost/cb"}, "native"},
		{[]string{"http://127.0.0.1/cb", "https://gw.example.com/cb"}, "web"},
		{[]string{"http://10.0.0.1/cb"}, "web"},
		{[]string{"https://127.0.0.1/cb"}, "web"},
		{nil, "web"},
	} {
		if got := ApplicationTypeFor(c.uris); got != c.want {
			t.Errorf("%v: %q, want %q", c.uris, got, c.want)
		}
	}
}
