package oauthclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/normalize"
)

func TestClientAuthenticationMethods(t *testing.T) {
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	// Characters that break naive Basic encoding (RFC 6749 §2.3.1).
	id, secret := "client:with space", "p@ss:w%rd+&="
	as.AddClient(id, secret)
	c := &Client{}
	for _, method := range []string{AuthBasic, AuthPost} {
		tok, err := c.Token(context.Background(), Credentials{ClientID: id, ClientSecret: secret, AuthMethod: method},
			Request{TokenEndpoint: as.TokenURL(), Grant: "client_credentials", Scopes: []string{"a", "b"}, Resource: "https://api.example/v1"})
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if tok.AccessToken == "" {
			t.Fatalf("%s: no token", method)
		}
	}
	for i, r := range as.Requests() {
		want := []string{"client_secret_basic", "client_secret_post"}[i]
		if r.AuthMethod != want || r.Resource != "https://api.example/v1" || r.Scope != "a b" || r.Accept != "application/json" {
			t.Fatalf("request %d = %+v", i, r)
		}
	}
	_, err = c.Token(context.Background(), Credentials{ClientID: id, ClientSecret: "wrong"}, Request{TokenEndpoint: as.TokenURL(), Grant: "client_credentials"})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.Code != "invalid_client" || !oe.Permanent() {
		t.Fatalf("wrong secret: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatal("secret in error")
	}
}

func TestBoundedReadsTimeoutsAndRedirects(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"` + strings.Repeat("x", 2<<20) + `"}`))
	}))
	defer big.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	var redirectedTo int
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirectedTo++ }))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()

	c := &Client{Timeout: 200 * time.Millisecond}
	creds := Credentials{ClientID: "c", ClientSecret: "s"}
	var te *TransportError
	if _, err := c.Token(context.Background(), creds, Request{TokenEndpoint: big.URL, Grant: "client_credentials"}); !errors.As(err, &te) {
		t.Fatalf("oversized body: %v", err)
	}
	start := time.Now()
	if _, err := c.Token(context.Background(), creds, Request{TokenEndpoint: slow.URL, Grant: "client_credentials"}); !errors.As(err, &te) || time.Since(start) > 3*time.Second {
		t.Fatalf("timeout: %v after %s", err, time.Since(start))
	}
	_, err := c.Token(context.Background(), creds, Request{TokenEndpoint: redirect.URL, Grant: "client_credentials"})
	if err == nil || redirectedTo != 0 {
		t.Fatalf("redirect followed (%d) or accepted: %v", redirectedTo, err)
	}
}

func TestEchoedSecretsAreScrubbed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token ` + r.PostForm.Get("refresh_token") + ` is revoked"}`))
	}))
	defer srv.Close()
	_, err := (&Client{}).Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"},
		Request{TokenEndpoint: srv.URL, Grant: "refresh_token", RefreshToken: "rt_very_secret_value"})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.Class != normalize.Permanent {
		t.Fatalf("%v", err)
	}
	if strings.Contains(err.Error(), "rt_very_secret_value") {
		t.Fatalf("refresh token echoed in error: %v", err)
	}
}

// An authorization server that echoes what it received (the Authorization
// header, the form body) must not put the client secret or refresh token
// into errors in any encoding.
func TestEchoedEncodedSecretsAreScrubbed(t *testing.T) {
	const id, secret, rt = "client:with space", "p@ss:w%rd+&=/?é~", "rt/with+special=chars"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		got := form.Get("client_secret")
		if _, pass, ok := r.BasicAuth(); ok {
			got, _ = url.QueryUnescape(pass)
		}
		desc := fmt.Sprintf("bad client: authorization=%q body=%q secret_b64=%s secret_b64url=%s",
			r.Header.Get("Authorization"), body, base64.StdEncoding.EncodeToString([]byte(got)), base64.RawURLEncoding.EncodeToString([]byte(got)))
		out, _ := json.Marshal(map[string]any{
			"error": "invalid_client", "error_description": desc,
			"request": map[string]any{"authorization": r.Header.Get("Authorization"), "body": []any{string(body)}},
		})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(out)
	}))
	defer srv.Close()
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	forbidden := map[string]string{
		"secret":                    secret,
		"secret url-encoded":        url.QueryEscape(secret),
		"secret path-escaped":       url.PathEscape(secret),
		"secret base64":             base64.StdEncoding.EncodeToString([]byte(secret)),
		"secret base64url":          base64.RawURLEncoding.EncodeToString([]byte(secret)),
		"basic value":               basic,
		"basic value url-encoded":   url.QueryEscape(basic),
		"refresh token":             rt,
		"refresh token url-encoded": url.QueryEscape(rt),
	}
	for _, method := range []string{AuthBasic, AuthPost} {
		_, err := (&Client{}).Token(context.Background(), Credentials{ClientID: id, ClientSecret: secret, AuthMethod: method},
			Request{TokenEndpoint: srv.URL, Grant: "refresh_token", RefreshToken: rt})
		var oe *Error
		if !errors.As(err, &oe) || oe.Err.Code != "invalid_client" {
			t.Fatalf("%s: %v", method, err)
		}
		ext, _ := json.Marshal(oe.Err.Extensions)
		for name, v := range forbidden {
			if strings.Contains(err.Error(), v) {
				t.Errorf("%s: %s in error: %v", method, name, err)
			}
			if strings.Contains(string(ext), v) {
				t.Errorf("%s: %s in extensions: %s", method, name, ext)
			}
		}
		if !strings.Contains(err.Error(), "REDACTED") || !strings.Contains(err.Error(), "bad client") {
			t.Errorf("%s: unexpected error text: %v", method, err)
		}
	}
}

func TestAuthorizationCodeGrant(t *testing.T) {
	const code, verifier, redirect = "SplxlOBeZQQYbYS6WxSbIA", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "http://127.0.0.1:8080/cb?x=1"
	var got url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = r.PostForm
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.PostForm.Get("code"), "used") {
			// A server that echoes what it rejected.
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":"invalid_grant","error_description":"code %s with verifier %s already used"}`,
				r.PostForm.Get("code"), r.PostForm.Get("code_verifier"))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","refresh_token":"rt","expires_in":3600}`))
	}))
	defer srv.Close()
	c := &Client{}
	creds := Credentials{ClientID: "public", AuthMethod: AuthNone}
	tests := []struct {
		name string
		req  Request
		want url.Values
	}{
		{"all parameters", Request{TokenEndpoint: srv.URL, Grant: GrantAuthorizationCode, Code: code, RedirectURI: redirect, CodeVerifier: verifier, Resource: "https://api.example"},
			url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "resource": {"https://api.example"}, "client_id": {"public"}}},
		{"unset ones are not sent", Request{TokenEndpoint: srv.URL, Grant: GrantAuthorizationCode, Code: code},
			url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"public"}}},
	}
	for _, tt := range tests {
		tok, err := c.Token(context.Background(), creds, tt.req)
		if err != nil || tok.AccessToken != "at" || tok.RefreshToken != "rt" {
			t.Fatalf("%s: %+v, %v", tt.name, tok, err)
		}
		if got.Encode() != tt.want.Encode() {
			t.Fatalf("%s: sent %s, want %s", tt.name, got.Encode(), tt.want.Encode())
		}
	}
	const usedCode = "used_code_0123456789"
	_, err := c.Token(context.Background(), creds, Request{TokenEndpoint: srv.URL, Grant: GrantAuthorizationCode, Code: usedCode, CodeVerifier: verifier})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.Code != "invalid_grant" || !oe.Permanent() {
		t.Fatalf("%v", err)
	}
	if strings.Contains(err.Error(), usedCode) || strings.Contains(err.Error(), verifier) || !strings.Contains(err.Error(), "code REDACTED with verifier REDACTED") {
		t.Fatalf("code or verifier echoed in error: %v", err)
	}
}
