package gateway

import (
	"crypto"
	"encoding/base64"
	"net/http"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// TestDPoPKeyStoragePath: a key of either algorithm, encoded as a
// credential record stores it, comes back through dpopKeyFor and
// DecodeDPoPKey as the same key, and signs upstream proofs go-jose
// verifies with it.
func TestDPoPKeyStoragePath(t *testing.T) {
	for _, alg := range []string{oauthclient.DPoPES256, oauthclient.DPoPEdDSA} {
		k, err := oauthclient.NewDPoPKeyFor(alg)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := k.MarshalPrivate()
		if err != nil {
			t.Fatal(err)
		}
		rec := tokenstore.Record{DPoPKey: string(enc)}
		k2, stored, err := (&requester{}).dpopKeyFor(rec.DPoPKey)
		if err != nil || stored != rec.DPoPKey || k2.Thumbprint() != k.Thumbprint() || k2.Algorithm() != alg {
			t.Fatalf("%s: dpopKeyFor: %v", alg, err)
		}
		decoded, err := DecodeDPoPKey([]byte(rec.DPoPKey))
		if err != nil {
			t.Fatal(err)
		}
		k3 := decoded.(*oauthclient.DPoPKey)
		if k3.Thumbprint() != k.Thumbprint() || k3.Algorithm() != alg {
			t.Fatalf("%s: DecodeDPoPKey changed the key", alg)
		}

		u := newUpstreamDPoP("https://rs.example/mcp")
		r, _ := http.NewRequest(http.MethodPost, "https://gw.example/mcp?q=1", nil)
		if err := u.setHeaders(r, &tokenstore.Token{AccessToken: "at", Key: k3}); err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		jwk := jws.Signatures[0].Protected.JSONWebKey
		if _, err := jws.Verify(jwk); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if sum, _ := jwk.Thumbprint(crypto.SHA256); base64.RawURLEncoding.EncodeToString(sum) != k.Thumbprint() {
			t.Fatalf("%s: proof signed with another key", alg)
		}
	}
}
