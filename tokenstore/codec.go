package tokenstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Codec turns a record's plaintext into what a backend stores, and back.
type Codec interface {
	Seal(id string, plaintext []byte) ([]byte, error)
	Open(id string, stored []byte) ([]byte, error)
}

// sealedMagic starts every encrypted record, so plaintext and encrypted
// records can be told apart during a migration to encryption.
var sealedMagic = []byte("OGW1")

// PlainCodec stores records as they are. Used when no encryption key is
// configured; it refuses encrypted records rather than misreading them.
type PlainCodec struct{}

// Seal implements Codec.
func (PlainCodec) Seal(_ string, p []byte) ([]byte, error) { return p, nil }

// Open implements Codec.
func (PlainCodec) Open(id string, b []byte) ([]byte, error) {
	if bytes.HasPrefix(b, sealedMagic) {
		return nil, fmt.Errorf("tokenstore: record %s is encrypted and no encryption_key is configured", id)
	}
	return b, nil
}

// AEADCodec encrypts records with AES-256-GCM. The first key seals; every
// key opens, so keys can rotate: add the new key first, keep the old ones
// until every record has been rewritten.
//
// Layout: "OGW1" | key id (4 bytes of SHA-256 of the key) | nonce (12) |
// ciphertext+tag. The credential id is the additional data, so a record
// moved to another key does not decrypt.
type AEADCodec struct {
	keys []aeadKey
}

type aeadKey struct {
	id   [4]byte
	aead cipher.AEAD
}

// NewAEADCodec builds a codec from 32-byte keys, the first one sealing.
func NewAEADCodec(keys ...[]byte) (*AEADCodec, error) {
	if len(keys) == 0 {
		return nil, errors.New("tokenstore: no encryption key")
	}
	c := &AEADCodec{}
	for i, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("tokenstore: encryption key %d is %d bytes, want 32", i+1, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		var kid [4]byte
		copy(kid[:], sum[:4])
		c.keys = append(c.keys, aeadKey{id: kid, aead: aead})
	}
	return c, nil
}

func additionalData(id string) []byte { return []byte("oauth_gateway:" + id) }

// Seal implements Codec.
func (c *AEADCodec) Seal(id string, p []byte) ([]byte, error) {
	k := c.keys[0]
	out := make([]byte, 0, len(sealedMagic)+4+k.aead.NonceSize()+len(p)+k.aead.Overhead())
	out = append(out, sealedMagic...)
	out = append(out, k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, p, additionalData(id)), nil
}

// Open implements Codec. A plaintext record (written before encryption was
// turned on) is accepted so existing credentials survive the migration;
// the next write seals it.
func (c *AEADCodec) Open(id string, b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, sealedMagic) {
		return b, nil
	}
	b = b[len(sealedMagic):]
	if len(b) < 4 {
		return nil, fmt.Errorf("tokenstore: record %s: truncated", id)
	}
	var kid [4]byte
	copy(kid[:], b[:4])
	b = b[4:]
	for _, k := range c.keys {
		if k.id != kid {
			continue
		}
		ns := k.aead.NonceSize()
		if len(b) < ns {
			return nil, fmt.Errorf("tokenstore: record %s: truncated", id)
		}
		p, err := k.aead.Open(nil, b[:ns], b[ns:], additionalData(id))
		if err != nil {
			return nil, fmt.Errorf("tokenstore: record %s does not decrypt: %w", id, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("tokenstore: record %s was sealed with a key that is not configured", id)
}
