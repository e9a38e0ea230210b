package oauthclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var allAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256, jose.EdDSA, jose.HS256}

// testKeys are generated once: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{"ec": ec, "ec384": ec384, "rsa": rk, "ed": ed}
})

func pemBytes(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes(t, "PRIVATE KEY", der)
}

func jwkBytes(t *testing.T, k jose.JSONWebKey) []byte {
	t.Helper()
	b, err := k.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantThumbprint(t *testing.T, k crypto.Signer) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: k.Public()}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

// verifyAssertion parses s with go-jose, checks the signature with key
// and the RFC 7523 §3 claims, and returns the jti. now zero: iat must be
// within seconds of the current time. It only calls t.Errorf, so that
// HTTP handlers may use it.
func verifyAssertion(t *testing.T, s string, key any, wantAlg jose.SignatureAlgorithm, wantKID, clientID, aud string, now time.Time) string {
	t.Helper()
	tok, err := jwt.ParseSigned(s, allAlgs)
	if err != nil {
		t.Errorf("ParseSigned: %v", err)
		return ""
	}
	h := tok.Headers[0]
	if jose.SignatureAlgorithm(h.Algorithm) != wantAlg {
		t.Errorf("alg = %s, want %s", h.Algorithm, wantAlg)
	}
	if h.KeyID != wantKID {
		t.Errorf("kid = %q, want %q", h.KeyID, wantKID)
	}
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "JWT" {
		t.Errorf("typ = %v", typ)
	}
	var c jwt.Claims
	var raw map[string]any
	if err := tok.Claims(key, &c, &raw); err != nil {
		t.Errorf("Claims (signature): %v", err)
		return ""
	}
	if c.Issuer != clientID || c.Subject != clientID {
		t.Errorf("iss %q sub %q, want %q", c.Issuer, c.Subject, clientID)
	}
	if a, ok := raw["aud"].(string); !ok || a != aud {
		t.Errorf("aud = %#v, want the single string %q", raw["aud"], aud)
	}
	if _, ok := raw["nbf"]; ok {
		t.Error("nbf present")
	}
	if c.IssuedAt == nil || c.Expiry == nil {
		t.Errorf("iat %v exp %v", c.IssuedAt, c.Expiry)
		return ""
	}
	if now.IsZero() {
		if d := time.Since(c.IssuedAt.Time()); d < -time.Second || d > 10*time.Second {
			t.Errorf("iat %v is not now", c.IssuedAt.Time())
		}
		now = c.IssuedAt.Time()
	} else if c.IssuedAt.Time().Unix() != now.Unix() {
		t.Errorf("iat %v, want %v", c.IssuedAt.Time(), now)
	}
	if d := c.Expiry.Time().Sub(c.IssuedAt.Time()); d != 60*time.Second {
		t.Errorf("exp - iat = %v", d)
	}
	if id, err := base64.RawURLEncoding.DecodeString(c.ID); err != nil || len(id) != 16 {
		t.Errorf("jti %q: not 16 random bytes base64url", c.ID)
	}
	if err := c.Validate(jwt.Expected{Issuer: clientID, Subject: clientID, AnyAudience: jwt.Audience{aud}, Time: now}); err != nil {
		t.Errorf("Validate: %v", err)
	}
	return c.ID
}

func TestLoadSigningKey(t *testing.T) {
	keys := testKeys()
	ec, rk, ed, ec384 := keys["ec"].(*ecdsa.PrivateKey), keys["rsa"].(*rsa.PrivateKey), keys["ed"].(ed25519.PrivateKey), keys["ec384"]
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	// openssl ecparam -genkey writes EC PARAMETERS before the key.
	withParams := append(pemBytes(t, "EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), pemBytes(t, "EC PRIVATE KEY", sec1)...)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: ec.Public(), KeyID: "other"},
		{Key: rk, Use: "sig"},
	}}
	setJSON, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		data       []byte
		alg, kid   string
		key        crypto.Signer
		wantAlg    jose.SignatureAlgorithm
		wantKID    string // "" = thumbprint
	}{
		{name: "ec pkcs8", file: "ec.pem", data: pkcs8(t, ec), key: ec, wantAlg: jose.ES256},
		{name: "ec sec1", file: "ec.key", data: pemBytes(t, "EC PRIVATE KEY", sec1), key: ec, wantAlg: jose.ES256},
		{name: "ec sec1 with parameters", file: "ec2.pem", data: withParams, key: ec, wantAlg: jose.ES256},
		{name: "ec p384 pkcs8", file: "ec384.pem", data: pkcs8(t, ec384), key: ec384, wantAlg: jose.ES384},
		{name: "rsa pkcs8", file: "rsa.pem", data: pkcs8(t, rk), key: rk, wantAlg: jose.RS256},
		{name: "rsa pkcs1", file: "rsa1.pem", data: pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), key: rk, wantAlg: jose.RS256},
		{name: "rsa pkcs1 PS256", file: "rsa2.pem", data: pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), alg: "PS256", key: rk, wantAlg: jose.PS256},
		{name: "ed25519 pkcs8", file: "ed.pem", data: pkcs8(t, ed), key: ed, wantAlg: jose.EdDSA},
		{name: "explicit kid", file: "ed2.pem", data: pkcs8(t, ed), kid: "k1", key: ed, wantAlg: jose.EdDSA, wantKID: "k1"},
		{name: "ec jwk", file: "ec.jwk", data: jwkBytes(t, jose.JSONWebKey{Key: ec}), key: ec, wantAlg: jose.ES256},
		{name: "rsa jwk with kid and alg", file: "rsa.jwk", data: jwkBytes(t, jose.JSONWebKey{Key: rk, KeyID: "rsa-1", Algorithm: "PS256"}), key: rk, wantAlg: jose.PS256, wantKID: "rsa-1"},
		{name: "ed25519 jwk", file: "ed.json", data: jwkBytes(t, jose.JSONWebKey{Key: ed}), key: ed, wantAlg: jose.EdDSA},
		{name: "jwks with one private key", file: "set.json", data: setJSON, key: rk, wantAlg: jose.RS256},
	}
	now := time.Unix(1_800_000_000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, tt.file, tt.data)
			k, err := LoadSigningKey(p, tt.alg, tt.kid)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm != tt.wantAlg {
				t.Errorf("alg = %s, want %s", k.Algorithm, tt.wantAlg)
			}
			wantKID := tt.wantKID
			if wantKID == "" {
				wantKID = wantThumbprint(t, tt.key)
			}
			if k.KeyID != wantKID {
				t.Errorf("kid = %q, want %q", k.KeyID, wantKID)
			}
			if !k.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.key.Public()) {
				t.Error("loaded a different key")
			}
			if s := fmt.Sprintf("%v %+v", k, k); strings.Contains(s, "D:") || !strings.Contains(s, k.KeyID) {
				t.Errorf("String: %s", s)
			}
			a1, err := NewAssertion("client-1", "https://as.example", k, "", now)
			if err != nil {
				t.Fatal(err)
			}
			a2, err := NewAssertion("client-1", "https://as.example", k, "", now)
			if err != nil {
				t.Fatal(err)
			}
			j1 := verifyAssertion(t, a1, tt.key.Public(), tt.wantAlg, wantKID, "client-1", "https://as.example", now)
			j2 := verifyAssertion(t, a2, tt.key.Public(), tt.wantAlg, wantKID, "client-1", "https://as.example", now)
			if j1 == j2 {
				t.Error("jti repeated across two assertions")
			}
		})
	}
}

func TestLoadSigningKeyErrors(t *testing.T) {
	keys := testKeys()
	ec, rk := keys["ec"].(*ecdsa.PrivateKey), keys["rsa"].(*rsa.PrivateKey)
	pubDER, err := x509.MarshalPKIXPublicKey(ec.Public())
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	twoPrivate, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec}, {Key: rk}}})
	if err != nil {
		t.Fatal(err)
	}
	secretJWK := jwkBytes(t, jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")})
	tests := []struct {
		name, file string
		data       []byte
		alg        string
		want       string
	}{
		{"empty", "empty.pem", nil, "", "empty file"},
		{"garbage", "garbage.pem", []byte("not a key at all\n"), "", "no PEM block"},
		{"bad json", "bad.json", []byte(`{"kty":"EC",`), "", "invalid JSON"},
		{"public key pem", "pub.pem", pemBytes(t, "PUBLIC KEY", pubDER), "", "not a private key"},
		{"public key jwk", "pub.jwk", jwkBytes(t, jose.JSONWebKey{Key: ec.Public()}), "", "not a private key"},
		{"symmetric jwk", "oct.jwk", secretJWK, "", "unsupported key type"},
		{"two private keys", "two.json", twoPrivate, "", "exactly one"},
		{"broken der", "broken.pem", pemBytes(t, "PRIVATE KEY", []byte{1, 2, 3}), "", "PEM block"},
		{"encrypted", "enc.pem", pemBytes(t, "ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "", "encrypted"},
		{"small rsa", "small.pem", pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "", "at least 2048"},
		{"wrong alg", "ecalg.pem", pkcs8(t, ec), "RS256", "does not suit"},
		{"PS256 for ec", "ecps.pem", pkcs8(t, ec), "PS256", "does not suit"},
		{"enc use", "enc.jwk", jwkBytes(t, jose.JSONWebKey{Key: ec, Use: "enc"}), "", "use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, tt.file, tt.data)
			_, err := LoadSigningKey(p, tt.alg, "")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want the path and %q", err, tt.want)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	if _, err := LoadSigningKey(missing, "", ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	// No key material in errors, even for a key that is otherwise wrong.
	sec1, _ := x509.MarshalECPrivateKey(ec)
	if _, err := ParseSigningKey(pemBytes(t, "EC PRIVATE KEY", sec1), "EdDSA", ""); err == nil ||
		strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(sec1)[:16]) || strings.Contains(err.Error(), ec.D.String()) {
		t.Errorf("error: %v", err)
	}
}

func TestClientSecretJWTAssertion(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := "a-client-secret-of-at-least-32-bytes!"
	a, err := NewAssertion("client-2", "https://issuer.example/tenant", nil, secret, now)
	if err != nil {
		t.Fatal(err)
	}
	verifyAssertion(t, a, []byte(secret), jose.HS256, "", "client-2", "https://issuer.example/tenant", now)
	tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Claims([]byte("another secret of thirty-two bytes....")); err == nil {
		t.Error("verified with the wrong secret")
	}
	for _, c := range []struct{ id, aud, secret string }{{"", "https://as", "s"}, {"c", "", "s"}, {"c", "https://as", ""}} {
		if _, err := NewAssertion(c.id, c.aud, nil, c.secret, now); err == nil {
			t.Errorf("NewAssertion(%q, %q, nil, %q): no error", c.id, c.aud, c.secret)
		}
	}
}

func TestPublicJWKS(t *testing.T) {
	keys := testKeys()
	var sks []*SigningKey
	for _, name := range []string{"ec", "rsa", "ed"} {
		k, err := ParseSigningKey(pkcs8(t, keys[name]), "", "")
		if err != nil {
			t.Fatal(err)
		}
		sks = append(sks, k)
	}
	out, err := PublicJWKS(sks...)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(out, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	for i, k := range set.Keys {
		if !k.IsPublic() || k.KeyID != sks[i].KeyID || k.Algorithm != string(sks[i].Algorithm) || k.Use != "sig" {
			t.Errorf("key %d: public %v kid %q alg %q use %q", i, k.IsPublic(), k.KeyID, k.Algorithm, k.Use)
		}
	}
	var raw struct{ Keys []map[string]any }
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	for i, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %d has private member %q", i, private)
			}
		}
	}
	// An assertion signed by a key verifies with the published JWKS.
	now := time.Now()
	a, err := NewAssertion("c", "https://as", sks[1], "", now)
	if err != nil {
		t.Fatal(err)
	}
	verifyAssertion(t, a, set.Key(sks[1].KeyID)[0], jose.RS256, sks[1].KeyID, "c", "https://as", now)
	if _, err := PublicJWKS(nil); err == nil {
		t.Error("PublicJWKS(nil): no error")
	}
}

func TestPrivateKeyJWTRequest(t *testing.T) {
	key, err := ParseSigningKey(pkcs8(t, testKeys()["ec"]), "", "")
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://issuer.example"
	var (
		mu        sync.Mutex
		seen      []string
		echoError bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		if h := r.Header.Get("Authorization"); h != "" {
			t.Errorf("%s: Authorization header %q", r.URL.Path, h)
		}
		if got := r.PostForm.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("%s: client_assertion_type %q", r.URL.Path, got)
		}
		if got := r.PostForm.Get("client_id"); got != "client-3" {
			t.Errorf("%s: client_id %q", r.URL.Path, got)
		}
		if r.PostForm.Has("client_secret") {
			t.Errorf("%s: client_secret sent", r.URL.Path)
		}
		a := r.PostForm.Get("client_assertion")
		verifyAssertion(t, a, key.Key.Public(), jose.ES256, key.KeyID, "client-3", issuer, time.Time{})
		mu.Lock()
		seen = append(seen, a)
		echo := echoError
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case echo:
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "bad assertion " + a})
		case r.URL.Path == "/revoke":
		default:
			_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":3600}`))
		}
	}))
	defer srv.Close()
	c := &Client{}
	creds := Credentials{ClientID: "client-3", AuthMethod: AuthPrivateKeyJWT, Key: key, Audience: issuer}
	ctx := context.Background()
	if _, err := c.Token(ctx, creds, Request{TokenEndpoint: srv.URL + "/token", Grant: "client_credentials"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, creds, srv.URL+"/revoke", "rt", "refresh_token"); err != nil {
		t.Fatal(err)
	}
	// A server echoing the assertion: the error does not repeat it.
	mu.Lock()
	echoError = true
	mu.Unlock()
	_, err = c.Token(ctx, creds, Request{TokenEndpoint: srv.URL + "/token", Grant: "client_credentials"})
	rerr := c.Revoke(ctx, creds, srv.URL+"/revoke", "rt", "refresh_token")
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 {
		t.Fatalf("server saw %d assertions", len(seen))
	}
	for i, e := range []error{err, rerr} {
		if e == nil {
			t.Fatalf("%d: no error", i)
		}
		if a := seen[2+i]; strings.Contains(e.Error(), a) || strings.Contains(e.Error(), strings.Split(a, ".")[2]) {
			t.Errorf("%d: error repeats the assertion: %v", i, e)
		}
	}
}

func TestJWTAuthMissingConfig(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("request sent without a usable assertion")
	}))
	defer srv.Close()
	key, err := ParseSigningKey(pkcs8(t, testKeys()["ed"]), "", "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		creds Credentials
		want  string
	}{
		{"no key", Credentials{ClientID: "c", AuthMethod: AuthPrivateKeyJWT, Audience: "https://as"}, "signing key"},
		{"no audience", Credentials{ClientID: "c", AuthMethod: AuthPrivateKeyJWT, Key: key}, "Audience"},
		{"no client id", Credentials{AuthMethod: AuthPrivateKeyJWT, Key: key, Audience: "https://as"}, "client_id"},
		{"no secret", Credentials{ClientID: "c", AuthMethod: AuthClientSecretJWT, Audience: "https://as"}, "client secret"},
		{"secret jwt without audience", Credentials{ClientID: "c", ClientSecret: "s", AuthMethod: AuthClientSecretJWT}, "Audience"},
	}
	c := &Client{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Token(context.Background(), tt.creds, Request{TokenEndpoint: srv.URL, Grant: "client_credentials"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Token: %v, want %q", err, tt.want)
			}
			if err := c.Revoke(context.Background(), tt.creds, srv.URL, "t", ""); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Revoke: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestClientSecretJWTRequest(t *testing.T) {
	const secret = "shared-secret-for-hs256-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.Header.Get("Authorization") != "" || r.PostForm.Has("client_secret") {
			t.Error("secret sent beside the assertion")
		}
		verifyAssertion(t, r.PostForm.Get("client_assertion"), []byte(secret), jose.HS256, "", "c", "https://as", time.Time{})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer"}`))
	}))
	defer srv.Close()
	creds := Credentials{ClientID: "c", ClientSecret: secret, AuthMethod: AuthClientSecretJWT, Audience: "https://as"}
	if _, err := (&Client{}).Token(context.Background(), creds, Request{TokenEndpoint: srv.URL, Grant: "client_credentials"}); err != nil {
		t.Fatal(err)
	}
}
