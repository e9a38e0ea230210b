package oauthclient

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
)

// FuzzDPoPProof builds proofs from arbitrary method, target, access token
// and nonce with both algorithms. Proof must refuse exactly the arguments
// no proof can carry (no method, a target that is not http(s), text that
// is not UTF-8); every proof it makes must be a compact JWS that go-jose
// parses with only the key's algorithm allowed and verifies with the
// embedded JWK, whose thumbprint is the key's, and whose payload decodes
// (encoding/json) to exactly the claims put in.
func FuzzDPoPProof(f *testing.F) {
	f.Add("GET", "https://rs.example/api?q=1#f", "at_123", "n-1")
	f.Add("POST", `https://rs.example/"quoted"\back`, "", "")
	f.Add("PUT", "http://h/\x00\x1f\u2028\u2029<>&é\x7f", "tok\x00", "\t\r\n\"\\")
	f.Add("", "ftp://x/", "", "")
	f.Add("GET", "https://h/\xff", "\xff", "\xc3")
	keys := []*DPoPKey{must(NewDPoPKeyFor(DPoPES256)), must(NewDPoPKeyFor(DPoPEdDSA))}
	f.Fuzz(func(t *testing.T, method, target, accessToken, nonce string) {
		for _, k := range keys {
			// The target as given, and as the path of an https URL, so
			// that arbitrary text reaches htu.
			for _, tg := range []string{target, "https://rs.example/" + target} {
				checkFuzzedProof(t, k, method, tg, accessToken, nonce)
			}
		}
	})
}

func checkFuzzedProof(t *testing.T, k *DPoPKey, method, target, accessToken, nonce string) {
	before := time.Now().Unix()
	proof, err := k.Proof(method, target, accessToken, nonce)
	after := time.Now().Unix()
	htu, terr := proofTarget(target)
	valid := method != "" && terr == nil && utf8.ValidString(method) && utf8.ValidString(htu) && utf8.ValidString(nonce)
	if (err == nil) != valid {
		t.Fatalf("%s: Proof(%q, %q, _, %q): %v, want valid=%v", k.alg, method, target, nonce, err, valid)
	}
	if err != nil {
		// The token is never in an error (short ones may occur by chance).
		if len(accessToken) >= 8 && strings.Contains(err.Error(), accessToken) {
			t.Fatalf("access token in %v", err)
		}
		return
	}

	// The compact serialization: three base64url segments, no padding,
	// the header the key's, the signature 64 bytes.
	seg := strings.Split(proof, ".")
	if len(seg) != 3 || seg[0]+"." != k.header {
		t.Fatalf("%s: proof %q", k.alg, proof)
	}
	if sig, err := base64.RawURLEncoding.Strict().DecodeString(seg[2]); err != nil || len(sig) != 64 {
		t.Fatalf("%s: signature %q: %v", k.alg, seg[2], err)
	}

	jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(k.alg)})
	if err != nil {
		t.Fatalf("%s: go-jose refuses %q: %v", k.alg, proof, err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if h.Algorithm != k.alg || h.ExtraHeaders[jose.HeaderType] != dpopType || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("%s: header %+v", k.alg, h)
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("%s: signature: %v", k.alg, err)
	}
	if sum, err := h.JSONWebKey.Thumbprint(crypto.SHA256); err != nil || base64.RawURLEncoding.EncodeToString(sum) != k.Thumbprint() {
		t.Fatalf("%s: embedded jwk is not the key's (%v)", k.alg, err)
	}

	// Exactly the claims put in: decoded strictly (numbers as written,
	// no duplicate or unknown members lost in a struct).
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var got map[string]any
	if err := dec.Decode(&got); err != nil || dec.More() {
		t.Fatalf("%s: payload %q: %v", k.alg, payload, err)
	}
	jti, _ := got["jti"].(string)
	if id, err := base64.RawURLEncoding.Strict().DecodeString(jti); err != nil || len(id) != 16 {
		t.Fatalf("jti %q", jti)
	}
	iat, _ := got["iat"].(json.Number)
	if n, err := iat.Int64(); err != nil || n < before || n > after {
		t.Fatalf("iat %v", got["iat"])
	}
	want := map[string]any{"jti": jti, "htm": method, "htu": htu, "iat": iat}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		want["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		want["nonce"] = nonce
	}
	if len(got) != len(want) {
		t.Fatalf("claims %v, want %v", got, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Fatalf("claim %s: %#v, want %#v (payload %q)", name, got[name], v, payload)
		}
	}
	// Each member once: a duplicate would be hidden by the map. A `"`
	// inside a value is escaped, so `"name":` occurs only as a member.
	for name := range want {
		if n := bytes.Count(payload, []byte(`"`+name+`":`)); n != 1 {
			t.Fatalf("member %s %d times in %q", name, n, payload)
		}
	}
}
