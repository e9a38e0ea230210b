package oauthclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// proofClaims are the claims a test decodes from a proof.
type proofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath"`
	Nonce string `json:"nonce"`
	Extra map[string]any
}

// verifyProof checks a proof the way a server would, with go-jose: one
// signature, typ dpop+jwt, alg ES256, a public jwk that verifies it; it
// returns the claims and the jwk's thumbprint.
func verifyProof(t *testing.T, proof string) (proofClaims, string) {
	t.Helper()
	jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse proof: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.Algorithm != "ES256" || h.KeyID != "" {
		t.Fatalf("header %+v", h)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || !h.JSONWebKey.Valid() {
		t.Fatalf("jwk missing or not public: %+v", h.JSONWebKey)
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	// The raw header holds exactly alg, typ and jwk, and the jwk no "d".
	rawHdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(proof, ".")[0])
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(rawHdr, &hdr); err != nil || len(hdr) != 3 || strings.Contains(string(hdr["jwk"]), `"d"`) {
		t.Fatalf("raw header %s", rawHdr)
	}
	var c proofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(payload, &c.Extra)
	sum, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return c, base64.RawURLEncoding.EncodeToString(sum)
}

func athOf(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

func TestDPoPProofClaims(t *testing.T) {
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Unix()
	p, err := k.Proof("GET", "https://rs.example/api/x?secret=1#frag", "at_123", "n-1")
	if err != nil {
		t.Fatal(err)
	}
	c, jkt := verifyProof(t, p)
	if c.HTM != "GET" || c.HTU != "https://rs.example/api/x" || c.ATH != athOf("at_123") || c.Nonce != "n-1" {
		t.Fatalf("claims %+v", c)
	}
	if c.IAT < before || c.IAT > time.Now().Unix() {
		t.Fatalf("iat %d", c.IAT)
	}
	if id, err := base64.RawURLEncoding.DecodeString(c.JTI); err != nil || len(id) != 16 {
		t.Fatalf("jti %q", c.JTI)
	}
	if jkt != k.Thumbprint() {
		t.Fatalf("thumbprint %s, jwk's %s", k.Thumbprint(), jkt)
	}
	// Without token and nonce, no ath and no nonce claims at all.
	p, _ = k.Proof("POST", "https://as.example/token", "", "")
	c, _ = verifyProof(t, p)
	if _, has := c.Extra["ath"]; has {
		t.Fatal("ath without a token")
	}
	if _, has := c.Extra["nonce"]; has {
		t.Fatal("nonce without one")
	}
	for _, bad := range []struct{ method, target string }{{"", "https://a/"}, {"GET", "/relative"}, {"GET", "ftp://x/"}, {"GET", "https://"}} {
		if _, err := k.Proof(bad.method, bad.target, "", ""); err == nil {
			t.Fatalf("%q %q accepted", bad.method, bad.target)
		}
	}
	if s := fmt.Sprintf("%v %+v %#v", k, k, k); strings.Contains(s, "D:") || !strings.Contains(s, k.Thumbprint()) {
		t.Fatalf("printed key: %s", s)
	}
}

func TestDPoPProofConcurrentUniqueJTI(t *testing.T) {
	k, _ := NewDPoPKey()
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				p, err := k.Proof("GET", "https://rs.example/", "tok", "")
				if err != nil {
					t.Error(err)
					return
				}
				c, _ := verifyProof(t, p)
				mu.Lock()
				seen[c.JTI] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Fatalf("%d distinct jti of 200", len(seen))
	}
}

func TestDPoPThumbprintMatchesGoJose(t *testing.T) {
	k, _ := NewDPoPKey()
	sum, err := (&jose.JSONWebKey{Key: &k.priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(sum); k.Thumbprint() != want || strings.Contains(want, "=") {
		t.Fatalf("thumbprint %s want %s", k.Thumbprint(), want)
	}
}

func TestDPoPKeyRoundTrip(t *testing.T) {
	k, _ := NewDPoPKey()
	data, err := k.MarshalPrivate()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil || m["kty"] != "EC" || m["crv"] != "P-256" || m["d"] == "" || m["alg"] != "ES256" {
		t.Fatalf("private JWK %v", err)
	}
	k2, err := ParseDPoPKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Thumbprint() != k.Thumbprint() {
		t.Fatal("thumbprint changed across the round trip")
	}
	p, _ := k2.Proof("POST", "https://as.example/token", "", "")
	if _, jkt := verifyProof(t, p); jkt != k.Thumbprint() {
		t.Fatal("restored key signs with another key")
	}
}

func TestParseDPoPKeyRefusals(t *testing.T) {
	k, _ := NewDPoPKey()
	priv, _ := k.MarshalPrivate()
	pub, _ := jose.JSONWebKey{Key: &k.priv.PublicKey}.MarshalJSON()
	oct, _ := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}.MarshalJSON()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384JWK, _ := jose.JSONWebKey{Key: p384}.MarshalJSON()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaJWK, _ := jose.JSONWebKey{Key: rsaKey}.MarshalJSON()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edJWK, _ := jose.JSONWebKey{Key: edKey}.MarshalJSON()
	withField := func(k, v string) []byte {
		var m map[string]any
		_ = json.Unmarshal(priv, &m)
		m[k] = v
		b, _ := json.Marshal(m)
		return b
	}
	// d of another key with this key's x and y.
	other, _ := NewDPoPKey()
	otherJWK, _ := other.MarshalPrivate()
	var om map[string]any
	_ = json.Unmarshal(otherJWK, &om)
	mismatched := withField("d", om["d"].(string))

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"public", pub, "public key only"},
		{"symmetric", oct, "symmetric"},
		{"P-384", p384JWK, "P-384"},
		{"RSA", rsaJWK, "unsupported key type"},
		{"Ed25519", edJWK, "unsupported key type"},
		{"alg", withField("alg", "RS256"), `alg is "RS256"`},
		{"use", withField("use", "enc"), `use is "enc"`},
		{"mismatch", mismatched, "do not match"},
		{"not JSON", []byte(`{"kty":"EC","d":"secretvalue`), "invalid JWK"},
		{"empty", nil, "invalid JWK"},
	} {
		_, err := ParseDPoPKey(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "secretvalue") || (om["d"] != nil && strings.Contains(err.Error(), om["d"].(string))) {
			t.Errorf("%s: key material in %v", tc.name, err)
		}
	}
}

func TestDPoPNonces(t *testing.T) {
	var n DPoPNonces // zero value usable
	n.Set("https://a:443", "n1")
	for _, bad := range []string{"", "has space", `quo"te`, `back\slash`, "tab\t", "é", strings.Repeat("x", 513)} {
		n.Set("https://a:443", bad)
	}
	if got := n.Get("https://a:443"); got != "n1" {
		t.Fatalf("got %q", got)
	}
	n.Set("https://a:443", strings.Repeat("x", 512))
	if len(n.Get("https://a:443")) != 512 {
		t.Fatal("512-byte nonce refused")
	}
	for i := range 3000 {
		n.Set(fmt.Sprintf("https://h%d:443", i), "v")
	}
	if len(n.m) != maxNonceOrigins || n.Get("https://h2999:443") != "v" {
		t.Fatalf("%d origins", len(n.m))
	}
	var nilN *DPoPNonces
	nilN.Set("https://a:443", "x")
	if nilN.Get("https://a:443") != "" {
		t.Fatal("nil remembers")
	}
}

func TestOriginOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://AS.Example/token?x=1":   "https://as.example:443",
		"HTTP://as.example:8080/a":       "http://as.example:8080",
		"http://as.example/":             "http://as.example:80",
		"https://[::1]/x":                "https://[::1]:443",
		"https://user:pw@as.example:444": "https://as.example:444",
		"/relative":                      "",
		"ftp://as.example/":              "",
		"::not a url":                    "",
	} {
		if got := OriginOf(in); got != want {
			t.Errorf("OriginOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUseDPoPNonce(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	asBody := []byte(`{"error":"use_dpop_nonce","error_description":"x"}`)
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   []byte
		want   string
	}{
		{"AS", 400, h("DPoP-Nonce", "n1"), asBody, "n1"},
		{"AS without nonce", 400, nil, asBody, ""},
		{"AS other error", 400, h("DPoP-Nonce", "n1"), []byte(`{"error":"invalid_grant"}`), ""},
		{"AS not JSON", 400, h("DPoP-Nonce", "n1"), []byte(`use_dpop_nonce`), ""},
		{"AS 401", 401, h("DPoP-Nonce", "n1"), asBody, ""},
		{"RS", 401, h("DPoP-Nonce", "n2", "WWW-Authenticate", `DPoP error="use_dpop_nonce"`), nil, "n2"},
		{"RS order", 401, h("DPoP-Nonce", "n2", "WWW-Authenticate", `dpop algs="ES256", error="use_dpop_nonce", error_description="x"`), nil, "n2"},
		{"RS other schemes", 401, h("DPoP-Nonce", "n2", "WWW-Authenticate", `Bearer realm="x", error="use_dpop_nonce", DPoP error=use_dpop_nonce`), nil, "n2"},
		{"RS second field", 401, h("DPoP-Nonce", "n2", "WWW-Authenticate", `Basic realm="r"`, "WWW-Authenticate", `DPoP error="use_dpop_nonce"`), nil, "n2"},
		{"RS Bearer only", 401, h("DPoP-Nonce", "n2", "WWW-Authenticate", `Bearer error="use_dpop_nonce"`), nil, ""},
		{"RS invalid proof", 401, h("DPoP-Nonce", "n2", "WWW-Authenticate", `DPoP error="invalid_dpop_proof"`), nil, ""},
		{"RS bad nonce", 401, h("DPoP-Nonce", "bad nonce", "WWW-Authenticate", `DPoP error="use_dpop_nonce"`), nil, ""},
		{"200", 200, h("DPoP-Nonce", "n1"), asBody, ""},
	} {
		got, ok := UseDPoPNonce(tc.status, tc.header, tc.body)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: %q %v, want %q", tc.name, got, ok, tc.want)
		}
	}
}

// dpopAS is a token endpoint that verifies DPoP proofs with go-jose and
// answers use_dpop_nonce until the proof carries its nonce.
type dpopAS struct {
	t         *testing.T
	mu        sync.Mutex
	nonce     string // required nonce; "" requires none
	giveNonce bool   // answer use_dpop_nonce when the nonce is wrong
	url       string // the htu proofs must carry
	endpoint  string // the token endpoint, with a query htu drops
	proofs    []proofClaims
	jkts      []string
	requests  int
	echo      bool // echo the proof in error_description
}

func (s *dpopAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	w.Header().Set("Content-Type", "application/json")
	proof := r.Header.Get("DPoP")
	if len(r.Header.Values("DPoP")) != 1 {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"error":"invalid_dpop_proof"}`))
		return
	}
	c, jkt := verifyProof(s.t, proof)
	s.proofs, s.jkts = append(s.proofs, c), append(s.jkts, jkt)
	if c.HTM != "POST" || c.HTU != s.url || time.Since(time.Unix(c.IAT, 0)) > time.Minute || c.ATH != "" {
		s.t.Errorf("proof claims %+v (want htu %s)", c, s.url)
	}
	if s.echo {
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_dpop_proof", "error_description": "bad proof " + proof})
		return
	}
	if c.Nonce != s.nonce {
		if s.giveNonce {
			w.Header().Set("DPoP-Nonce", s.nonce)
		}
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"error":"use_dpop_nonce"}`))
		return
	}
	w.Header().Set("DPoP-Nonce", "next-"+s.nonce)
	_, _ = w.Write([]byte(`{"access_token":"at","token_type":"DPoP","expires_in":60}`))
}

func newDPoPAS(t *testing.T, nonce string, giveNonce bool) *dpopAS {
	s := &dpopAS{t: t, nonce: nonce, giveNonce: giveNonce}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.url = ts.URL + "/token"
	s.endpoint = s.url + "?tenant=1"
	return s
}

func TestTokenDPoPNonceRetry(t *testing.T) {
	as := newDPoPAS(t, "srv-nonce", true)
	k, _ := NewDPoPKey()
	c := &Client{DPoPNonces: &DPoPNonces{}}
	creds := Credentials{ClientID: "c", ClientSecret: "s"}
	endpoint := as.endpoint
	tok, err := c.Token(context.Background(), creds, Request{TokenEndpoint: endpoint, Grant: "refresh_token", RefreshToken: "rt", DPoP: k})
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" || as.requests != 2 {
		t.Fatalf("token type %q after %d requests", tok.TokenType, as.requests)
	}
	if as.proofs[0].Nonce != "" || as.proofs[1].Nonce != "srv-nonce" || as.proofs[0].JTI == as.proofs[1].JTI {
		t.Fatalf("proofs %+v", as.proofs)
	}
	if as.jkts[0] != k.Thumbprint() || as.jkts[1] != k.Thumbprint() {
		t.Fatal("proof key is not the credential's")
	}
	// The nonce on the 200 is adopted; the next request sends it at once.
	origin := OriginOf(endpoint)
	if got := c.DPoPNonces.Get(origin); got != "next-srv-nonce" {
		t.Fatalf("remembered %q", got)
	}
	as.nonce = "next-srv-nonce"
	if _, err := c.Token(context.Background(), creds, Request{TokenEndpoint: endpoint, Grant: "client_credentials", DPoP: k}); err != nil || as.requests != 3 {
		t.Fatalf("%v after %d requests", err, as.requests)
	}
}

func TestTokenDPoPRetriesOnlyOnce(t *testing.T) {
	// A server whose nonce changes before every request keeps answering
	// use_dpop_nonce: the client retries once, then reports the error.
	as := newDPoPAS(t, "", true)
	swap := &nonceSwapper{as: as}
	ts := httptest.NewServer(swap)
	t.Cleanup(ts.Close)
	as.url = ts.URL
	k, _ := NewDPoPKey()
	c := &Client{} // no shared nonce table: the retry works all the same
	_, err := c.Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: ts.URL, Grant: "client_credentials", DPoP: k})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.VendorCode != "use_dpop_nonce" || as.requests != 2 {
		t.Fatalf("%v after %d requests", err, as.requests)
	}
	if as.proofs[1].Nonce != "n1" {
		t.Fatalf("retry carried %q", as.proofs[1].Nonce)
	}
}

// nonceSwapper changes the required nonce before every request, as a
// server with a very short nonce lifetime would.
type nonceSwapper struct {
	as *dpopAS
	n  int
}

func (s *nonceSwapper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.as.mu.Lock()
	s.n++
	s.as.nonce = fmt.Sprintf("n%d", s.n)
	s.as.mu.Unlock()
	s.as.ServeHTTP(w, r)
}

func TestTokenDPoPNoRetryWithoutNonce(t *testing.T) {
	as := newDPoPAS(t, "secret-nonce", false)
	k, _ := NewDPoPKey()
	c := &Client{DPoPNonces: &DPoPNonces{}}
	_, err := c.Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: as.endpoint, Grant: "client_credentials", DPoP: k})
	if err == nil || as.requests != 1 {
		t.Fatalf("%v after %d requests", err, as.requests)
	}
}

func TestTokenDPoPProofScrubbed(t *testing.T) {
	as := newDPoPAS(t, "", false)
	as.echo = true
	k, _ := NewDPoPKey()
	_, err := (&Client{}).Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: as.endpoint, Grant: "client_credentials", DPoP: k})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.VendorCode != "invalid_dpop_proof" {
		t.Fatalf("%v", err)
	}
	if strings.Contains(err.Error(), "eyJ") || !strings.Contains(oe.Err.Description, "REDACTED") {
		t.Fatalf("proof in error: %v", err)
	}
}

func TestTokenWithoutDPoPSendsNoProof(t *testing.T) {
	var got []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Values("DPoP")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer"}`))
	}))
	defer ts.Close()
	if _, err := (&Client{}).Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: ts.URL, Grant: "client_credentials"}); err != nil || len(got) != 0 {
		t.Fatalf("%v %v", err, got)
	}
}

func BenchmarkDPoPProof(b *testing.B) {
	k, err := NewDPoPKey()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Proof("POST", "https://rs.example/mcp?x=1", "at_0123456789abcdef", "nonce-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := k.Proof("POST", "https://rs.example/mcp?x=1", "at_0123456789abcdef", "nonce-1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// TestDPoPAgainstFakeServers runs the client's proofs past the fake
// servers' own verification (a separate go-jose code path).
func TestDPoPAgainstFakeServers(t *testing.T) {
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{DPoPNonce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.AddClient("c1", "s1")
	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{AuthServer: as, DPoPNonce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	k, _ := NewDPoPKey()
	c := &Client{DPoPNonces: &DPoPNonces{}}
	token := func() string {
		t.Helper()
		tok, err := c.Token(context.Background(), Credentials{ClientID: "c1", ClientSecret: "s1"},
			Request{TokenEndpoint: as.TokenURL(), Grant: "client_credentials", Resource: up.Resource(), DPoP: k})
		if err != nil {
			t.Fatal(err)
		}
		if tok.TokenType != "DPoP" || as.BoundKey(tok.AccessToken) != k.Thumbprint() {
			t.Fatalf("token type %q bound to %q", tok.TokenType, as.BoundKey(tok.AccessToken))
		}
		return tok.AccessToken
	}
	at := token()
	if n := as.TokenRequests(""); n != 2 {
		t.Fatalf("%d token requests, want 2 (nonce round trip)", n)
	}
	token() // the nonce adopted from the 200 is sent at once
	if n := as.TokenRequests(""); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
	as.RotateDPoPNonce()
	token()
	if n := as.TokenRequests(""); n != 5 {
		t.Fatalf("%d token requests, want 5", n)
	}
	if v, f := as.DPoPStats(); v != 3 || len(f) != 0 {
		t.Fatalf("AS stats %d %v", v, f)
	}

	// At the resource: ath, htu without the query, and the nonce dance
	// through UseDPoPNonce.
	var nonces DPoPNonces
	target := up.URL() + "/echo?x=1"
	get := func() *http.Response {
		proof, err := k.Proof(http.MethodGet, target, at, nonces.Get(OriginOf(target)))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "DPoP "+at)
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	resp := get()
	n, ok := UseDPoPNonce(resp.StatusCode, resp.Header, nil)
	if !ok {
		t.Fatalf("first request: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	nonces.Set(OriginOf(target), n)
	if resp := get(); resp.StatusCode != 200 {
		t.Fatalf("with nonce: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if v, distinct, f := up.DPoPStats(); v != 1 || distinct != 2 || len(f) != 0 {
		t.Fatalf("upstream stats %d %d %v", v, distinct, f)
	}
}
