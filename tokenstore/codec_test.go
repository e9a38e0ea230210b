package tokenstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// sealV1 seals p as the previous format did ("OGW1", the id alone as
// additional data), with the codec's first key.
func sealV1(t testing.TB, c *AEADCodec, id string, p []byte) []byte {
	t.Helper()
	k := c.keys[0]
	out := append([]byte(nil), sealedMagicV1...)
	out = append(out, k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, p, additionalDataV1(id))
}

func TestSealedRecordIsBoundToKindIDAndGeneration(t *testing.T) {
	c, _ := NewAEADCodec(sealingKey)
	b := Binding{Kind: KindPending, ID: "pending-x", Generation: 3}
	sealed, err := c.Seal(b, []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.Open(b, sealed); err != nil || string(p) != `{"x":1}` {
		t.Fatalf("round trip: %q %v", p, err)
	}
	for name, other := range map[string]Binding{
		"kind":       {Kind: KindRegistration, ID: b.ID, Generation: b.Generation},
		"id":         {Kind: b.Kind, ID: "pending-y", Generation: b.Generation},
		"generation": {Kind: b.Kind, ID: b.ID, Generation: b.Generation + 1},
		"older":      {Kind: b.Kind, ID: b.ID, Generation: b.Generation - 1},
	} {
		if _, err := c.Open(other, sealed); err == nil {
			t.Errorf("opened under another %s", name)
		}
	}
	// Without a key, either format is refused, not misread.
	for _, s := range [][]byte{sealed, sealV1(t, c, b.ID, []byte(`{}`))} {
		if _, err := (PlainCodec{}).Open(b, s); err == nil {
			t.Error("PlainCodec read a sealed record")
		}
	}
	// With a key, plaintext is refused.
	if _, err := c.Open(b, []byte(`{"x":1}`)); err == nil {
		t.Error("AEADCodec read a plaintext record")
	}
}

// The previous format is read only where it can be held to the new rule:
// a credential whose sealed generation is the stored one, a pending
// authorization or registration at generation 1. The next write seals it
// in the new format.
func TestPreviousSealedFormat(t *testing.T) {
	ctx := context.Background()
	codec, _ := NewAEADCodec(sealingKey)
	spec := refreshSpec("seed")
	id := spec.ID()
	recordV1 := func(gen uint64, rt string) []byte {
		plain, _ := encodeRecord(&Record{ID: id, Generation: gen, Grant: GrantRefreshToken, ClientID: spec.ClientID,
			Resource: spec.Resource, TokenEndpoint: spec.TokenEndpoint, SeedHash: spec.seedHash(), RefreshToken: rt, UpdatedAt: time.Now()})
		return sealV1(t, codec, id, plain)
	}

	t.Run("credential at its own generation is read and re-sealed", func(t *testing.T) {
		b := NewMemoryBackend()
		overwrite(t, b, id, 4, recordV1(4, "rt-old-format"))
		req := newRotating("rt-old-format", time.Hour)
		m := newTestManagerCodec(t, b, codec)
		if _, err := m.Credential(spec, req).Token(ctx); err != nil {
			t.Fatal(err)
		}
		if req.lastReq.RefreshToken != "rt-old-format" {
			t.Fatalf("presented %q", req.lastReq.RefreshToken)
		}
		now := take(t, b, id)
		if now.gen != 5 || !bytes.HasPrefix(now.data, sealedMagic) {
			t.Fatalf("not re-sealed in the new format: generation %d, %q", now.gen, now.data[:4])
		}
	})
	t.Run("credential copied back over a newer generation is refused", func(t *testing.T) {
		b := NewMemoryBackend()
		overwrite(t, b, id, 5, recordV1(4, "rt-spent"))
		req := newRotating("rt-spent", time.Hour)
		if _, err := newTestManagerCodec(t, b, codec).Credential(spec, req).Token(ctx); !errors.Is(err, ErrUnreadable) {
			t.Fatalf("%v, want ErrUnreadable", err)
		}
		if req.calls.Load() != 0 {
			t.Fatal("presented the refresh token of an older copy")
		}
	})
	t.Run("pending at generation 1 is read", func(t *testing.T) {
		b := NewMemoryBackend()
		m := newTestManagerCodec(t, b, codec)
		plain, _ := json.Marshal(&PendingAuthorization{CredentialID: "c", CodeVerifier: "v", ExpiresAt: time.Now().Add(time.Hour)})
		overwrite(t, b, pendingID("s"), 1, sealV1(t, codec, pendingID("s"), plain))
		if p, err := m.TakePending(ctx, "s"); err != nil || p.CodeVerifier != "v" {
			t.Fatalf("%+v %v", p, err)
		}
	})
	t.Run("registration above generation 1 is refused", func(t *testing.T) {
		b := NewMemoryBackend()
		m := newTestManagerCodec(t, b, codec)
		rid := registrationID("https://as.example", "https://gw/cb")
		plain, _ := json.Marshal(&Registration{ClientID: "old"})
		overwrite(t, b, rid, 1, sealV1(t, codec, rid, plain))
		never := func(context.Context) (*Registration, error) { return nil, errors.New("registered again") }
		if reg, err := m.Registered(ctx, "https://as.example", "https://gw/cb", "", never); err != nil || reg.ClientID != "old" {
			t.Fatalf("generation 1: %+v %v", reg, err)
		}
		overwrite(t, b, rid, 2, sealV1(t, codec, rid, plain))
		if _, err := m.Registered(ctx, "https://as.example", "https://gw/cb", "", never); !errors.Is(err, ErrUnreadable) {
			t.Fatalf("generation 2: %v, want ErrUnreadable", err)
		}
	})
	t.Run("kind is told by the id", func(t *testing.T) {
		sealed := sealV1(t, codec, "pending-x", []byte(`{"id":"pending-x","generation":1}`))
		if _, err := codec.Open(Binding{Kind: KindCredential, ID: "pending-x", Generation: 1}, sealed); err == nil {
			t.Fatal("a pending id opened as a credential")
		}
		if _, err := codec.Open(Binding{Kind: KindRegistration, ID: "pending-x", Generation: 1}, sealed); err == nil {
			t.Fatal("a pending id opened as a registration")
		}
	})
}

// FuzzAEADCodecOpen: whatever is stored, Open does not panic, opens only
// sealed data, and what it opens was sealed for exactly that binding.
func FuzzAEADCodecOpen(f *testing.F) {
	c, _ := NewAEADCodec(sealingKey)
	f.Add([]byte(`{"id":"c","generation":1}`), uint64(1), uint8(0))
	f.Add([]byte("OGW2"), uint64(0), uint8(1))
	f.Add([]byte("OGW1\x00\x00\x00\x00"), uint64(2), uint8(2))
	seal2, _ := c.Seal(Binding{Kind: KindCredential, ID: "c", Generation: 1}, []byte(`{"id":"c","generation":1}`))
	f.Add(seal2, uint64(1), uint8(0))
	f.Add(sealV1(f, c, "c", []byte(`{"id":"c","generation":1}`)), uint64(1), uint8(0))
	kinds := []RecordKind{KindCredential, KindPending, KindRegistration}
	f.Fuzz(func(t *testing.T, stored []byte, gen uint64, k uint8) {
		b := Binding{Kind: kinds[int(k)%len(kinds)], ID: "c", Generation: gen}
		if b.Kind == KindPending {
			b.ID = "pending-c"
		}
		if p, err := c.Open(b, stored); err == nil {
			if !isSealed(stored) {
				t.Fatalf("opened unsealed data %q as %q", stored, p)
			}
		}
		sealed, err := c.Seal(b, stored)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := c.Open(b, sealed); err != nil || !bytes.Equal(p, stored) {
			t.Fatalf("round trip: %v", err)
		}
		b.Generation++
		if _, err := c.Open(b, sealed); err == nil {
			t.Fatal("opened under another generation")
		}
	})
}
