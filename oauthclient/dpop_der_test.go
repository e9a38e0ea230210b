package oauthclient

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// derSig encodes r and s as crypto/ecdsa does.
func derSig(r, s []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(r) })
		b.AddASN1(asn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(s) })
	})
	return b.BytesOrPanic()
}

// TestDERToRawP256 covers the widths DER gives r and s (a leading zero
// when the top bit is set, fewer bytes when the top ones are zero) and
// refuses what is not a P-256 signature.
func TestDERToRawP256(t *testing.T) {
	full := bytes.Repeat([]byte{0x11}, 32)
	high := append([]byte{0}, bytes.Repeat([]byte{0x81}, 32)...)
	short := []byte{0x7f, 0x01}
	var out [64]byte
	if !derToRawP256(derSig(high, short), &out) ||
		!bytes.Equal(out[:32], high[1:]) || !bytes.Equal(out[32:62], make([]byte, 30)) || !bytes.Equal(out[62:], short) {
		t.Fatalf("high/short: %x", out)
	}
	if !derToRawP256(derSig(full, full), &out) || !bytes.Equal(out[:], append(full, full...)) {
		t.Fatalf("full: %x", out)
	}
	for name, der := range map[string][]byte{
		"empty":      nil,
		"r too wide": derSig(append([]byte{1}, full...), full),
		"negative r": derSig([]byte{0x80}, full),
		"zero s":     derSig(full, []byte{0}),
		"empty s":    derSig(full, nil),
		"trailing":   append(derSig(full, full), 0),
		"truncated":  func() []byte { d := derSig(full, full); return d[:len(d)-1] }(),
	} {
		if derToRawP256(der, &out) {
			t.Errorf("%s accepted", name)
		}
	}
	// Against crypto/ecdsa: r||s of the conversion verify as big.Ints.
	k, _ := NewDPoPKey()
	for range 200 {
		sum := sha256.Sum256([]byte("m"))
		der, err := ecdsa.SignASN1(rand.Reader, k.ec, sum[:])
		if err != nil || !derToRawP256(der, &out) {
			t.Fatalf("%v %x", err, der)
		}
		r, s := new(big.Int).SetBytes(out[:32]), new(big.Int).SetBytes(out[32:])
		if !ecdsa.Verify(&k.ec.PublicKey, sum[:], r, s) {
			t.Fatalf("raw signature does not verify: %x", out)
		}
	}
}
