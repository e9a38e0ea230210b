package oauthclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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

// verifyProof checks an ES256 proof the way a server would, with
// go-jose: one signature, typ dpop+jwt, alg ES256, a public jwk that
// verifies it; it returns the claims and the jwk's thumbprint.
func verifyProof(t *testing.T, proof string) (proofClaims, string) {
	t.Helper()
	return verifyProofAlg(t, proof, DPoPES256)
}

// verifyProofAlg is verifyProof for a proof signed with alg, the only
// algorithm go-jose is allowed to accept.
func verifyProofAlg(t *testing.T, proof, alg string) (proofClaims, string) {
	t.Helper()
	jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("parse proof: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.Algorithm != alg || h.KeyID != "" {
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
	for _, alg := range []string{DPoPES256, DPoPEdDSA} {
		t.Run(alg, func(t *testing.T) { testDPoPProofClaims(t, alg) })
	}
}

func testDPoPProofClaims(t *testing.T, alg string) {
	k, err := NewDPoPKeyFor(alg)
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm() != alg {
		t.Fatalf("algorithm %q", k.Algorithm())
	}
	verifyProof := func(t *testing.T, p string) (proofClaims, string) {
		t.Helper()
		return verifyProofAlg(t, p, alg)
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

// publicOf is the key's public half, as go-jose takes it.
func publicOf(k *DPoPKey) any {
	if k.ed != nil {
		return k.ed.Public()
	}
	return &k.ec.PublicKey
}

func TestDPoPThumbprintMatchesGoJose(t *testing.T) {
	for _, alg := range []string{DPoPES256, DPoPEdDSA} {
		k, err := NewDPoPKeyFor(alg)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := (&jose.JSONWebKey{Key: publicOf(k)}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if want := base64.RawURLEncoding.EncodeToString(sum); k.Thumbprint() != want || strings.Contains(want, "=") {
			t.Fatalf("%s: thumbprint %s want %s", alg, k.Thumbprint(), want)
		}
	}
}

// TestDPoPHeaderMatchesGoJose: the hand-built protected header decodes to
// the members go-jose would write for the key, and its jwk to the key.
func TestDPoPHeaderMatchesGoJose(t *testing.T) {
	for _, alg := range []string{DPoPES256, DPoPEdDSA} {
		k, _ := NewDPoPKeyFor(alg)
		if !strings.HasSuffix(k.header, ".") {
			t.Fatalf("%s: header %q", alg, k.header)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimSuffix(k.header, "."))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		jwk, _ := jose.JSONWebKey{Key: publicOf(k)}.MarshalJSON()
		var wantJWK any
		_ = json.Unmarshal(jwk, &wantJWK)
		want := map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": wantJWK}
		if g, _ := json.Marshal(got); string(g) != string(must(json.Marshal(want))) {
			t.Fatalf("%s: header %s, want %s", alg, g, must(json.Marshal(want)))
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestChooseDPoPAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		supported []string
		allow     bool
		want      string
	}{
		{nil, false, "ES256"},
		{nil, true, "ES256"},
		{[]string{"ES256", "EdDSA"}, false, "ES256"},
		{[]string{"ES256", "EdDSA"}, true, "EdDSA"},
		{[]string{"EdDSA"}, true, "EdDSA"},
		{[]string{"EdDSA"}, false, "ES256"},
		{[]string{"eddsa", "Ed25519"}, true, "ES256"},
		{[]string{"RS256", "PS256"}, true, "ES256"},
	} {
		if got := ChooseDPoPAlgorithm(tc.supported, tc.allow); got != tc.want {
			t.Errorf("ChooseDPoPAlgorithm(%q, %v) = %s, want %s", tc.supported, tc.allow, got, tc.want)
		}
	}
	if _, err := NewDPoPKeyFor("RS256"); err == nil {
		t.Fatal("RS256 key made")
	}
	if k, err := NewDPoPKeyFor(""); err != nil || k.Algorithm() != DPoPES256 {
		t.Fatalf("default key %v %v", k, err)
	}
}

func TestDPoPKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct{ alg, kty, crv string }{{DPoPES256, "EC", "P-256"}, {DPoPEdDSA, "OKP", "Ed25519"}} {
		k, _ := NewDPoPKeyFor(tc.alg)
		data, err := k.MarshalPrivate()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		if err := json.Unmarshal(data, &m); err != nil || m["kty"] != tc.kty || m["crv"] != tc.crv || m["d"] == "" || m["alg"] != tc.alg || m["use"] != "sig" {
			t.Fatalf("%s: private JWK %v", tc.alg, err)
		}
		k2, err := ParseDPoPKey(data)
		if err != nil {
			t.Fatal(err)
		}
		if k2.Thumbprint() != k.Thumbprint() || k2.Algorithm() != tc.alg {
			t.Fatalf("%s: thumbprint or algorithm changed across the round trip", tc.alg)
		}
		p, _ := k2.Proof("POST", "https://as.example/token", "", "")
		if _, jkt := verifyProofAlg(t, p, tc.alg); jkt != k.Thumbprint() {
			t.Fatalf("%s: restored key signs with another key", tc.alg)
		}
		// Without alg and use, as a key written by hand may be.
		delete(m, "alg")
		delete(m, "use")
		if k3, err := ParseDPoPKey(must(json.Marshal(m))); err != nil || k3.Algorithm() != tc.alg || k3.Thumbprint() != k.Thumbprint() {
			t.Fatalf("%s: without alg: %v", tc.alg, err)
		}
	}
}

func TestParseDPoPKeyRefusals(t *testing.T) {
	k, _ := NewDPoPKey()
	priv, _ := k.MarshalPrivate()
	pub, _ := jose.JSONWebKey{Key: &k.ec.PublicKey}.MarshalJSON()
	oct, _ := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}.MarshalJSON()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384JWK, _ := jose.JSONWebKey{Key: p384}.MarshalJSON()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaJWK, _ := jose.JSONWebKey{Key: rsaKey}.MarshalJSON()
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edPubJWK, _ := jose.JSONWebKey{Key: edPub}.MarshalJSON()
	edJWK, _ := jose.JSONWebKey{Key: edKey, Algorithm: "ES256"}.MarshalJSON()
	ecAsEdDSA, _ := jose.JSONWebKey{Key: k.ec, Algorithm: "EdDSA"}.MarshalJSON()
	// d of another Ed25519 key with this key's x.
	_, edOther, _ := ed25519.GenerateKey(rand.Reader)
	var edm, edom map[string]any
	_ = json.Unmarshal(must(jose.JSONWebKey{Key: edKey}.MarshalJSON()), &edm)
	_ = json.Unmarshal(must(jose.JSONWebKey{Key: edOther}.MarshalJSON()), &edom)
	edm["d"] = edom["d"]
	edMismatched, _ := json.Marshal(edm)
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
		{"Ed25519 public", edPubJWK, "public key only"},
		{"Ed25519 as ES256", edJWK, `alg is "ES256", not EdDSA`},
		{"P-256 as EdDSA", ecAsEdDSA, `alg is "EdDSA", not ES256`},
		{"Ed25519 mismatch", edMismatched, "x does not match d"},
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
		if strings.Contains(err.Error(), "secretvalue") || strings.Contains(err.Error(), om["d"].(string)) || strings.Contains(err.Error(), edom["d"].(string)) {
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

// benchProof is one proof per iteration with the arguments of an
// upstream request: a query htu drops, an access token, a nonce.
func benchProof(b *testing.B, proof func(method, target, accessToken, nonce string) (string, error)) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proof("POST", "https://rs.example/mcp?x=1", "at_0123456789abcdef", "nonce-1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDPoPProofES256(b *testing.B) {
	k, err := NewDPoPKeyFor(DPoPES256)
	if err != nil {
		b.Fatal(err)
	}
	benchProof(b, k.Proof)
}

func BenchmarkDPoPProofEdDSA(b *testing.B) {
	k, err := NewDPoPKeyFor(DPoPEdDSA)
	if err != nil {
		b.Fatal(err)
	}
	benchProof(b, k.Proof)
}

// BenchmarkDPoPProofGoJoseES256 is the builder this package used before,
// go-jose's signer with json.Marshal'ed claims, for comparison.
func BenchmarkDPoPProofGoJoseES256(b *testing.B) {
	k, err := NewDPoPKeyFor(DPoPES256)
	if err != nil {
		b.Fatal(err)
	}
	old, err := newGoJoseProofer(k.ec)
	if err != nil {
		b.Fatal(err)
	}
	benchProof(b, old.proof)
}

// BenchmarkDPoPSignatureES256 and BenchmarkDPoPSignatureEdDSA are the
// signatures alone, by the standard library, over a signing input the
// size of a proof's: the floor a proof's cost is measured against.
func BenchmarkDPoPSignatureES256(b *testing.B) {
	k, _ := NewDPoPKeyFor(DPoPES256)
	input := []byte(strings.Repeat("x", 480))
	b.ReportAllocs()
	for b.Loop() {
		sum := sha256.Sum256(input)
		if _, err := ecdsa.SignASN1(rand.Reader, k.ec, sum[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDPoPSignatureEdDSA(b *testing.B) {
	k, _ := NewDPoPKeyFor(DPoPEdDSA)
	input := []byte(strings.Repeat("x", 400))
	b.ReportAllocs()
	for b.Loop() {
		_ = ed25519.Sign(k.ed, input)
	}
}
