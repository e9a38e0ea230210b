package fakeoauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is generated once: 2048-bit generation is slow under -race.
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func testECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publicSet is the JWKS a client would publish for key under kid.
func publicSet(key crypto.Signer, kid, alg string) jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}}}
}

// assertion builds a client assertion; mutate adjusts the claims.
type assertionSpec struct {
	alg    jose.SignatureAlgorithm
	key    any
	kid    string
	claims map[string]any
}

func signAssertion(t *testing.T, s assertionSpec) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(s.claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var jtiCounter struct {
	sync.Mutex
	n int
}

func claimsFor(as *AuthServer, id string) map[string]any {
	jtiCounter.Lock()
	jtiCounter.n++
	n := jtiCounter.n
	jtiCounter.Unlock()
	now := time.Now()
	return map[string]any{
		"iss": id, "sub": id, "aud": as.Issuer(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": fmt.Sprintf("jti-%d", n),
	}
}

func assertionForm(raw string) url.Values {
	v := cc("", "")
	v.Set("client_assertion_type", assertionType)
	v.Set("client_assertion", raw)
	return v
}

func jwtOpts() AuthServerOptions {
	return AuthServerOptions{AuthMethods: []string{methodBasic, methodPrivateKeyJWT, methodSecretJWT}}
}

func wantInvalidClient(t *testing.T, ans tokenAnswer, what string) {
	t.Helper()
	if ans.status != http.StatusUnauthorized || ans.str("error") != "invalid_client" {
		t.Errorf("%s: %d %s, want 401 invalid_client", what, ans.status, ans.raw)
	}
	t.Logf("%s: %s", what, ans.str("error_description"))
}

func TestPrivateKeyJWT(t *testing.T) {
	as := newAS(t, jwtOpts())
	ec, rk := testECKey(t), testRSAKey(t)
	as.AddKeyClientKeys("ec", publicSet(ec, "k-ec", "ES256"))
	as.AddKeyClientKeys("rsa", publicSet(rk, "k-rsa", ""))

	for _, tc := range []struct {
		id  string
		alg jose.SignatureAlgorithm
		key any
		kid string
	}{{"ec", jose.ES256, ec, "k-ec"}, {"rsa", jose.RS256, rk, "k-rsa"}, {"rsa", jose.PS256, rk, ""}} {
		c := claimsFor(as, tc.id)
		ans := postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{tc.alg, tc.key, tc.kid, c}))})
		if ans.status != http.StatusOK || ans.str("access_token") == "" {
			t.Fatalf("%s %s: %d %s", tc.id, tc.alg, ans.status, ans.raw)
		}
		last := as.Requests()[len(as.Requests())-1]
		if last.AuthMethod != methodPrivateKeyJWT || last.ClientID != tc.id {
			t.Errorf("log: %+v", last)
		}
	}
	log := as.AssertionLog()
	if len(log) != 3 {
		t.Fatalf("assertion log: %+v", log)
	}
	if r := log[0]; r.ClientID != "ec" || r.KeyID != "k-ec" || r.Alg != "ES256" || !slices.Equal(r.Aud, []string{as.Issuer()}) || r.AudIsArray || r.JTI == "" || !r.Accepted {
		t.Errorf("record: %+v", r)
	}

	// Failures, each with a fresh jti.
	other := testECKey(t)
	cases := []struct {
		name string
		spec func() assertionSpec
	}{
		{"aud is the token endpoint", func() assertionSpec {
			c := claimsFor(as, "ec")
			c["aud"] = as.TokenURL()
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"aud array with the token endpoint too", func() assertionSpec {
			c := claimsFor(as, "ec")
			c["aud"] = []string{as.Issuer(), as.TokenURL()}
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"expired", func() assertionSpec {
			c := claimsFor(as, "ec")
			c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"no exp", func() assertionSpec {
			c := claimsFor(as, "ec")
			delete(c, "exp")
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"iat in the future", func() assertionSpec {
			c := claimsFor(as, "ec")
			c["iat"] = time.Now().Add(5 * time.Minute).Unix()
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"no jti", func() assertionSpec {
			c := claimsFor(as, "ec")
			delete(c, "jti")
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"sub is not the client", func() assertionSpec {
			c := claimsFor(as, "ec")
			c["sub"] = "someone"
			return assertionSpec{jose.ES256, ec, "k-ec", c}
		}},
		{"wrong key", func() assertionSpec { return assertionSpec{jose.ES256, other, "k-ec", claimsFor(as, "ec")} }},
		{"wrong key without kid", func() assertionSpec { return assertionSpec{jose.ES256, other, "", claimsFor(as, "ec")} }},
		{"unknown kid", func() assertionSpec { return assertionSpec{jose.ES256, ec, "k-other", claimsFor(as, "ec")} }},
		{"HS256 for a key client", func() assertionSpec {
			return assertionSpec{jose.HS256, []byte(strings.Repeat("k", 32)), "", claimsFor(as, "ec")}
		}},
		{"unknown client", func() assertionSpec { return assertionSpec{jose.ES256, ec, "k-ec", claimsFor(as, "nobody")} }},
	}
	for _, tc := range cases {
		wantInvalidClient(t, postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, tc.spec()))}), tc.name)
	}

	// An array holding only the issuer is accepted.
	c := claimsFor(as, "ec")
	c["aud"] = []string{as.Issuer()}
	if ans := postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k-ec", c}))}); ans.status != http.StatusOK {
		t.Errorf("aud [issuer]: %d %s", ans.status, ans.raw)
	}
	if r := as.AssertionLog()[len(as.AssertionLog())-1]; !r.AudIsArray || !r.Accepted {
		t.Errorf("record: %+v", r)
	}

	// Replay.
	raw := signAssertion(t, assertionSpec{jose.ES256, ec, "k-ec", claimsFor(as, "ec")})
	if ans := postToken(t, as, tokenCall{form: assertionForm(raw)}); ans.status != http.StatusOK {
		t.Fatalf("first use: %d %s", ans.status, ans.raw)
	}
	wantInvalidClient(t, postToken(t, as, tokenCall{form: assertionForm(raw)}), "reused jti")

	// client_id in the form must match.
	f := assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k-ec", claimsFor(as, "ec")}))
	f.Set("client_id", "rsa")
	wantInvalidClient(t, postToken(t, as, tokenCall{form: f}), "client_id mismatch")
	f = assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k-ec", claimsFor(as, "ec")}))
	f.Set("client_id", "ec")
	if ans := postToken(t, as, tokenCall{form: f}); ans.status != http.StatusOK {
		t.Errorf("matching client_id: %d %s", ans.status, ans.raw)
	}

	// Basic plus an assertion is invalid_request.
	f = assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k-ec", claimsFor(as, "ec")}))
	if ans := postToken(t, as, tokenCall{form: f, basicID: "c1", basicSecret: "s1"}); ans.status != http.StatusBadRequest || ans.str("error") != "invalid_request" {
		t.Errorf("basic and assertion: %d %s", ans.status, ans.raw)
	}
	// A wrong assertion type.
	f = assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k-ec", claimsFor(as, "ec")}))
	f.Set("client_assertion_type", "urn:example:other")
	wantInvalidClient(t, postToken(t, as, tokenCall{form: f}), "assertion type")
	// A key client cannot fall back to Basic with an empty secret.
	wantInvalidClient(t, postToken(t, as, tokenCall{form: cc("", ""), basicID: "ec", basicSecret: ""}), "key client with basic")
}

func TestPrivateKeyJWTNotInAuthMethods(t *testing.T) {
	as := newAS(t, AuthServerOptions{}) // basic and post only
	ec := testECKey(t)
	as.AddKeyClientKeys("ec", publicSet(ec, "k", ""))
	as.AddSecretJWTClient("hs", strings.Repeat("s", 32))
	wantInvalidClient(t, postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k", claimsFor(as, "ec")}))}), "private_key_jwt not offered")
	wantInvalidClient(t, postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.HS256, []byte(strings.Repeat("s", 32)), "", claimsFor(as, "hs")}))}), "client_secret_jwt not offered")
}

func TestPrivateKeyJWTFromJWKSURL(t *testing.T) {
	k1, k2 := testECKey(t), testECKey(t)
	var mu sync.Mutex
	served := publicSet(k1, "v1", "ES256")
	fetches := 0
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(served)
	}))
	t.Cleanup(jwks.Close)

	opts := jwtOpts()
	opts.JWKSCacheTTL = -1 // refetch on every assertion
	as := newAS(t, opts)
	as.AddKeyClient("kc", jwks.URL)

	post := func(key *ecdsa.PrivateKey, kid string) tokenAnswer {
		return postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.ES256, key, kid, claimsFor(as, "kc")}))})
	}
	if ans := post(k1, "v1"); ans.status != http.StatusOK {
		t.Fatalf("v1: %d %s", ans.status, ans.raw)
	}
	// Rotation: the client publishes k2 only.
	mu.Lock()
	served = publicSet(k2, "v2", "ES256")
	mu.Unlock()
	if ans := post(k2, "v2"); ans.status != http.StatusOK {
		t.Fatalf("v2 after rotation: %d %s", ans.status, ans.raw)
	}
	wantInvalidClient(t, post(k1, "v1"), "retired key")
	if n := as.JWKSFetches("kc"); n != 3 {
		t.Errorf("JWKSFetches = %d, want 3", n)
	}

	// With the default TTL, the JWKS is fetched once for several assertions.
	cached := newAS(t, jwtOpts())
	cached.AddKeyClient("kc", jwks.URL)
	for range 3 {
		ans := postToken(t, cached, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.ES256, k2, "v2", claimsFor(cached, "kc")}))})
		if ans.status != http.StatusOK {
			t.Fatalf("cached: %d %s", ans.status, ans.raw)
		}
	}
	if n := cached.JWKSFetches("kc"); n != 1 {
		t.Errorf("JWKSFetches with cache = %d, want 1", n)
	}

	// An unreachable JWKS fails the client.
	dead := httptest.NewServer(http.NotFoundHandler())
	as.AddKeyClient("gone", dead.URL)
	dead.Close()
	wantInvalidClient(t, postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.ES256, k1, "v1", claimsFor(as, "gone")}))}), "unreachable jwks")
}

func TestClientSecretJWT(t *testing.T) {
	as := newAS(t, jwtOpts())
	secret := strings.Repeat("0123456789abcdef", 2)
	as.AddSecretJWTClient("hs", secret)
	ans := postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.HS256, []byte(secret), "", claimsFor(as, "hs")}))})
	if ans.status != http.StatusOK {
		t.Fatalf("valid: %d %s", ans.status, ans.raw)
	}
	if last := as.Requests()[len(as.Requests())-1]; last.AuthMethod != methodSecretJWT || last.ClientID != "hs" {
		t.Errorf("log: %+v", last)
	}
	if r := as.AssertionLog()[0]; r.Alg != "HS256" || r.ClientID != "hs" || !r.Accepted {
		t.Errorf("record: %+v", r)
	}
	wrong := []byte(strings.Repeat("x", 32))
	wantInvalidClient(t, postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.HS256, wrong, "", claimsFor(as, "hs")}))}), "wrong secret")
	if r := as.AssertionLog()[1]; r.Accepted {
		t.Errorf("record of a refused assertion: %+v", r)
	}
	// The secret is not a client_secret_basic secret.
	wantInvalidClient(t, postToken(t, as, tokenCall{form: cc("", ""), basicID: "hs", basicSecret: secret}), "secret-jwt client with basic")
}

func TestRevocationWithClientAssertion(t *testing.T) {
	as := newAS(t, jwtOpts())
	ec := testECKey(t)
	as.AddKeyClientKeys("ec", publicSet(ec, "k", ""))
	ans := postToken(t, as, tokenCall{form: assertionForm(signAssertion(t, assertionSpec{jose.ES256, ec, "k", claimsFor(as, "ec")}))})
	if ans.status != http.StatusOK {
		t.Fatalf("token: %d %s", ans.status, ans.raw)
	}
	revoke := func(raw string) int {
		f := url.Values{"token": {ans.str("access_token")}, "token_type_hint": {"access_token"}}
		f.Set("client_assertion_type", assertionType)
		f.Set("client_assertion", raw)
		resp, err := http.PostForm(as.RevocationURL(), f)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := revoke(signAssertion(t, assertionSpec{jose.ES256, testECKey(t), "k", claimsFor(as, "ec")})); st != http.StatusUnauthorized {
		t.Errorf("revoke with a wrong key: %d", st)
	}
	if st := revoke(signAssertion(t, assertionSpec{jose.ES256, ec, "k", claimsFor(as, "ec")})); st != http.StatusOK {
		t.Errorf("revoke: %d", st)
	}
	if got := as.Revocations(); len(got) != 1 {
		t.Errorf("revocations: %v", got)
	}
}

func TestAuthMethodsNoneOnly(t *testing.T) {
	as := newAS(t, AuthServerOptions{AuthMethods: []string{methodNone}})
	as.AddPublicClient("pub")
	// A public client authenticates with client_id alone; refresh needs a
	// token, so an unknown one proves authentication passed.
	f := refreshForm("unknown")
	f.Set("client_id", "pub")
	if ans := postToken(t, as, tokenCall{form: f}); ans.status != http.StatusBadRequest || ans.str("error") != "invalid_grant" {
		t.Errorf("client_id only: %d %s", ans.status, ans.raw)
	}
	if last := as.Requests()[len(as.Requests())-1]; last.AuthMethod != methodNone {
		t.Errorf("log: %+v", last)
	}
	wantInvalidClient(t, postToken(t, as, basic(cc("", ""))), "basic not offered")
}

func TestMetadataAdvertisesSigningAlgs(t *testing.T) {
	for _, tc := range []struct {
		methods []string
		want    bool
	}{{nil, false}, {[]string{methodPrivateKeyJWT}, true}, {[]string{methodBasic, methodSecretJWT}, true}} {
		as := newAS(t, AuthServerOptions{AuthMethods: tc.methods})
		resp, err := http.Get(as.OAuthMetadataURL())
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		algs, ok := doc["token_endpoint_auth_signing_alg_values_supported"].([]any)
		if ok != tc.want {
			t.Errorf("%v: signing algs advertised = %v", tc.methods, ok)
			continue
		}
		if ok && len(algs) != 5 {
			t.Errorf("%v: %v", tc.methods, algs)
		}
		methods, _ := doc["token_endpoint_auth_methods_supported"].([]any)
		for _, m := range tc.methods {
			if !slices.Contains(methods, any(m)) {
				t.Errorf("%v: methods %v lack %s", tc.methods, methods, m)
			}
		}
	}
}
