package oauthclient

// The proof builder this package used before building proofs by hand:
// go-jose's signer over json.Marshal'ed claims. It stays here as the
// benchmarks' baseline and as a second builder whose proofs the new ones
// must match member for member.

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type goJoseProofer struct{ signer jose.Signer }

func newGoJoseProofer(priv *ecdsa.PrivateKey) (*goJoseProofer, error) {
	jwk, err := jose.JSONWebKey{Key: &priv.PublicKey}.MarshalJSON()
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType(dpopType).WithHeader(jose.HeaderKey("jwk"), json.RawMessage(jwk))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
	if err != nil {
		return nil, err
	}
	return &goJoseProofer{signer: signer}, nil
}

func (g *goJoseProofer) proof(method, target, accessToken, nonce string) (string, error) {
	if method == "" {
		return "", errors.New("no HTTP method")
	}
	htu, err := proofTarget(target)
	if err != nil {
		return "", err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	c := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		ATH   string `json:"ath,omitempty"`
		Nonce string `json:"nonce,omitempty"`
	}{base64.RawURLEncoding.EncodeToString(id[:]), method, htu, time.Now().Unix(), "", nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := g.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// decodeSegment decodes one segment of a compact JWS as JSON.
func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		t.Fatalf("segment %q: %v", seg, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("segment %s: %v", raw, err)
	}
	return m
}

// TestDPoPProofMatchesGoJoseBuilder: with the same key and arguments, the
// old and new builders' headers are the same JSON value, and so are their
// claims but for jti (random) and iat (a clock second may pass).
func TestDPoPProofMatchesGoJoseBuilder(t *testing.T) {
	k, _ := NewDPoPKey()
	old, err := newGoJoseProofer(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][4]string{
		{"POST", "https://rs.example/mcp?x=1", "at_0123456789abcdef", "nonce-1"},
		{"GET", "https://rs.example/a%20b/<&>/\u2028é", "", ""},
		{"PATCH", "http://h:8080/\"q\"\\\x01\x1f\x7f", "tok", "n\"\\\n"},
	} {
		pn, err := k.Proof(args[0], args[1], args[2], args[3])
		if err != nil {
			t.Fatal(err)
		}
		po, err := old.proof(args[0], args[1], args[2], args[3])
		if err != nil {
			t.Fatal(err)
		}
		verifyProof(t, pn)
		n, o := strings.Split(pn, "."), strings.Split(po, ".")
		if len(n) != 3 || len(o) != 3 || len(n[2]) != 86 || len(o[2]) != 86 {
			t.Fatalf("segments %d %d, signature %d characters", len(n), len(o), len(n[2]))
		}
		if hn, ho := decodeSegment(t, n[0]), decodeSegment(t, o[0]); !reflect.DeepEqual(hn, ho) {
			t.Fatalf("header %v, go-jose's %v", hn, ho)
		}
		cn, co := decodeSegment(t, n[1]), decodeSegment(t, o[1])
		for _, m := range []map[string]any{cn, co} {
			delete(m, "jti")
			delete(m, "iat")
		}
		if !reflect.DeepEqual(cn, co) {
			t.Fatalf("claims %v, go-jose's %v", cn, co)
		}
	}
}
