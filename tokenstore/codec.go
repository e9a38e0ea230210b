package tokenstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// RecordKind is what a stored record is. It is bound into a sealed record,
// so a record of one kind never opens as another.
type RecordKind string

// Record kinds.
const (
	KindCredential   RecordKind = "credential"
	KindPending      RecordKind = "pending"
	KindRegistration RecordKind = "registration"
	// KindPendingIndex counts a handler's or a user's outstanding
	// authorizations (pending_bounds.go).
	KindPendingIndex RecordKind = "pending-index"
)

// Binding is what a sealed record is bound to: its kind, its storage key
// (id) and the generation the backend stores beside it. Sealed with one
// binding, a record opens under that binding only: moved to another key,
// read as another kind, or copied back over a newer generation (an older
// value captured earlier) it does not open, and the credential fails
// closed (ErrUnreadable).
type Binding struct {
	Kind       RecordKind
	ID         string
	Generation uint64
}

// Codec turns a record's plaintext into what a backend stores, and back.
// Open is given the binding of what the backend holds (the generation is
// the one the backend reports), and refuses data sealed for anything else.
type Codec interface {
	Seal(b Binding, plaintext []byte) ([]byte, error)
	Open(b Binding, stored []byte) ([]byte, error)
}

// Magic numbers start every sealed record. sealedMagic is the format
// written now; sealedMagicV1 the previous one (the id alone bound), still
// opened under the rule in openV1.
var (
	sealedMagic   = []byte("OGW2")
	sealedMagicV1 = []byte("OGW1")
)

func isSealed(b []byte) bool {
	return bytes.HasPrefix(b, sealedMagic) || bytes.HasPrefix(b, sealedMagicV1)
}

// PlainCodec stores records as they are. Used when no encryption key is
// configured; it refuses encrypted records rather than misreading them.
type PlainCodec struct{}

// Seal implements Codec.
func (PlainCodec) Seal(_ Binding, p []byte) ([]byte, error) { return p, nil }

// Open implements Codec.
func (PlainCodec) Open(b Binding, stored []byte) ([]byte, error) {
	if isSealed(stored) {
		return nil, fmt.Errorf("tokenstore: record %s is encrypted and no encryption_key is configured", b.ID)
	}
	return stored, nil
}

// AEADCodec encrypts records with AES-256-GCM. The first key seals; every
// key opens, so keys can rotate: add the new key first, keep the old ones
// until every record has been rewritten.
//
// Layout: "OGW2" | key id (4 bytes of SHA-256 of the key) | nonce (12) |
// ciphertext+tag. The additional data is the record's Binding (kind, id,
// generation), so a record moved to another key, read as another kind or
// copied back over a newer generation does not decrypt.
//
// With a key configured, only sealed records are read: anything else (a
// plaintext record planted by someone with write access to the store, or
// left from before encryption was turned on) is refused, and the caller
// leaves it where it is for an operator.
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

// additionalData is the AEAD additional data of the current format: a
// label, then kind and id each with its length, then the generation.
func additionalData(b Binding) []byte {
	ad := make([]byte, 0, 64+len(b.ID))
	ad = append(ad, "oauth_gateway record v2\x00"...)
	ad = binary.AppendUvarint(ad, uint64(len(b.Kind)))
	ad = append(ad, b.Kind...)
	ad = binary.AppendUvarint(ad, uint64(len(b.ID)))
	ad = append(ad, b.ID...)
	return binary.BigEndian.AppendUint64(ad, b.Generation)
}

// additionalDataV1 is the previous format's: the id alone.
func additionalDataV1(id string) []byte { return []byte("oauth_gateway:" + id) }

// Seal implements Codec.
func (c *AEADCodec) Seal(b Binding, p []byte) ([]byte, error) {
	k := c.keys[0]
	out := make([]byte, 0, len(sealedMagic)+4+k.aead.NonceSize()+len(p)+k.aead.Overhead())
	out = append(out, sealedMagic...)
	out = append(out, k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, p, additionalData(b)), nil
}

// Open implements Codec. A record that is not sealed is refused: with a
// key configured, a plaintext record is one the gateway did not write
// (planted), or one written before encryption was turned on, and either
// way nothing vouches for it.
func (c *AEADCodec) Open(b Binding, stored []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(stored, sealedMagic):
		p, err := c.decrypt(b.ID, stored[len(sealedMagic):], additionalData(b))
		if errors.Is(err, errNoOpen) {
			return nil, fmt.Errorf("tokenstore: %s record %s does not decrypt as generation %d (tampered with, copied from another key, or an older copy restored)",
				b.Kind, b.ID, b.Generation)
		}
		return p, err
	case bytes.HasPrefix(stored, sealedMagicV1):
		return c.openV1(b, stored[len(sealedMagicV1):])
	default:
		return nil, fmt.Errorf("tokenstore: %s record %s is not encrypted although encryption_key is configured; it was not written by the gateway with this key (planted, or left from before encryption was turned on) and is not read",
			b.Kind, b.ID)
	}
}

var errNoOpen = errors.New("does not decrypt")

// decrypt opens body (key id, nonce, ciphertext) with the key it names.
func (c *AEADCodec) decrypt(id string, body, ad []byte) ([]byte, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("tokenstore: record %s: truncated", id)
	}
	var kid [4]byte
	copy(kid[:], body[:4])
	body = body[4:]
	for _, k := range c.keys {
		if k.id != kid {
			continue
		}
		ns := k.aead.NonceSize()
		if len(body) < ns {
			return nil, fmt.Errorf("tokenstore: record %s: truncated", id)
		}
		p, err := k.aead.Open(nil, body[:ns], body[ns:], ad)
		if err != nil {
			return nil, errNoOpen
		}
		return p, nil
	}
	return nil, fmt.Errorf("tokenstore: record %s was sealed with a key that is not configured", id)
}

// openV1 opens a record sealed in the previous format ("OGW1"), whose
// additional data was the id alone: neither the kind nor the generation
// was bound.
//
// Format decision. Such a record is read only where the old format can be
// held to the new rule, so accepting it opens nothing the new format
// closes:
//
//   - A credential record's sealed plaintext carries its own id and
//     generation (every write sealed the record with the generation it was
//     stored under), and both are authenticated by the AEAD. The record is
//     read only if that generation is the one the backend reports: an older
//     copy put back over a newer generation is refused exactly as in the
//     new format.
//   - A pending authorization or a registration carries no generation. It
//     is read only at generation 1, the first value ever stored under its
//     key (a pending authorization is written once, so always), where the
//     binding has nothing to tell apart. A registration renewed before the
//     upgrade (generation 2 or more) is refused; removing it makes the
//     gateway register again.
//   - The kind is told by the id (credential ids are bare hex, pending ids
//     start "pending-", registration ids "client-") and the id was bound.
//
// The next write of any record seals it in the new format. A whole older
// copy (value and generation) put back is what the new format cannot
// detect either (see the package documentation).
func (c *AEADCodec) openV1(b Binding, body []byte) ([]byte, error) {
	if !kindMatchesID(b.Kind, b.ID) {
		return nil, fmt.Errorf("tokenstore: record %s is not a %s record", b.ID, b.Kind)
	}
	p, err := c.decrypt(b.ID, body, additionalDataV1(b.ID))
	if errors.Is(err, errNoOpen) {
		return nil, fmt.Errorf("tokenstore: %s record %s (previous format) does not decrypt (tampered with, or copied from another key)", b.Kind, b.ID)
	}
	if err != nil {
		return nil, err
	}
	switch b.Kind {
	case KindCredential:
		var own struct {
			ID         string `json:"id"`
			Generation uint64 `json:"generation"`
		}
		if err := json.Unmarshal(p, &own); err != nil || own.ID != b.ID || own.Generation != b.Generation {
			return nil, fmt.Errorf("tokenstore: credential record %s (previous format) was sealed as generation %d and is stored as generation %d (an older copy restored?)",
				b.ID, own.Generation, b.Generation)
		}
	default:
		if b.Generation != 1 {
			return nil, fmt.Errorf("tokenstore: %s record %s (previous format) is stored as generation %d; that format binds no generation, so only generation 1 is read (remove the record to start over)",
				b.Kind, b.ID, b.Generation)
		}
	}
	return p, nil
}

// kindMatchesID reports whether id is in the namespace of kind.
func kindMatchesID(kind RecordKind, id string) bool {
	pending, registration := strings.HasPrefix(id, pendingPrefix), strings.HasPrefix(id, registrationPrefix)
	index := strings.HasPrefix(id, pendingIndexPrefix)
	switch kind {
	case KindPending:
		return pending
	case KindRegistration:
		return registration
	case KindPendingIndex:
		return index
	case KindCredential:
		return !pending && !registration && !index
	}
	return false
}
