package oauthclient

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzUseDPoPNonce feeds arbitrary WWW-Authenticate values, DPoP-Nonce
// values and bodies to UseDPoPNonce: it must never panic, and must only
// ask for a retry with a nonce a proof can carry, for the answer that
// asked for it.
func FuzzUseDPoPNonce(f *testing.F) {
	f.Add(`DPoP error="use_dpop_nonce"`, "n0nce", []byte(`{"error":"use_dpop_nonce"}`))
	f.Add(`Bearer realm="x", DPoP algs="ES256 RS256", error=use_dpop_nonce`, "eyJ7S_zG.9qYhn", []byte(nil))
	f.Add(`Basic realm="a,b\"c", dpop error="use_dpop_nonce"`, "bad nonce", []byte(`{"error":["use_dpop_nonce"]}`))
	f.Fuzz(func(t *testing.T, wwwAuth, nonce string, body []byte) {
		h := http.Header{}
		h.Set("WWW-Authenticate", wwwAuth)
		h.Set("DPoP-Nonce", nonce)
		for _, status := range []int{200, 400, 401, 403} {
			got, ok := UseDPoPNonce(status, h, body)
			if !ok {
				if got != "" {
					t.Fatalf("%d: nonce %q without ok", status, got)
				}
				continue
			}
			if got != h.Get("DPoP-Nonce") || !validNonce(got) || len(got) > maxNonceLen {
				t.Fatalf("%d: nonce %q from header %q", status, got, nonce)
			}
			switch status {
			case 400:
				var m map[string]any
				if json.Unmarshal(body, &m) != nil || m["error"] != "use_dpop_nonce" {
					t.Fatalf("400 without use_dpop_nonce in the body: %q", body)
				}
			case 401:
				low := strings.ToLower(wwwAuth)
				// Quoted-string escapes may split the code in the raw text.
				if !strings.Contains(low, "dpop") || !strings.Contains(strings.ReplaceAll(wwwAuth, `\`, ""), "use_dpop_nonce") {
					t.Fatalf("401 without a DPoP use_dpop_nonce challenge: %q", wwwAuth)
				}
			default:
				t.Fatalf("status %d asked for a retry", status)
			}
			// What UseDPoPNonce accepts, DPoPNonces stores.
			var n DPoPNonces
			n.Set("https://as.example:443", got)
			if n.Get("https://as.example:443") != got {
				t.Fatalf("nonce %q accepted but not stored", got)
			}
		}
	})
}

// FuzzParseDPoPKey: a stored key is read back on every start and every
// refresh; arbitrary bytes must be refused or give a key whose proofs
// verify, never a panic.
func FuzzParseDPoPKey(f *testing.F) {
	k, err := NewDPoPKey()
	if err != nil {
		f.Fatal(err)
	}
	good, err := k.MarshalPrivate()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(must(must(NewDPoPKeyFor(DPoPEdDSA)).MarshalPrivate()))
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}`))
	f.Add([]byte(`{"kty":"OKP","crv":"Ed25519","x":"AAAA","d":"AAAA"}`))
	f.Add([]byte(`{"kty":"oct","k":"c2VjcmV0"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseDPoPKey(data)
		if err != nil {
			return
		}
		if _, err := key.Proof("GET", "https://rs.example/x", "tok", ""); err != nil {
			t.Fatalf("accepted key cannot sign: %v", err)
		}
		if key.Thumbprint() == "" {
			t.Fatal("accepted key without thumbprint")
		}
	})
}
