package tokenstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func TestStorageBackendFilePermissions(t *testing.T) {
	dir := t.TempDir()
	b := NewStorageBackend(&certmagic.FileStorage{Path: dir}, "")
	if err := b.CompareAndSwap(context.Background(), "c2", 0, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "oauth_gateway", "credentials", "c2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("credential file mode %o, want 600", perm)
	}
}

func TestEncryptedRecordsUnreadableWithoutKey(t *testing.T) {
	key1 := bytes.Repeat([]byte{1}, 32)
	key2 := bytes.Repeat([]byte{2}, 32)
	b := NewMemoryBackend()
	c1, _ := NewAEADCodec(key1)
	m1, _ := NewManager(b, c1, nil, testOptions())
	defer m1.Close()
	rec := &Record{ID: "c1", Generation: 1, RefreshToken: "very-secret-refresh-token"}
	if err := m1.save(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	_, raw, _ := b.Get(context.Background(), "c1")
	if bytes.Contains(raw, []byte("very-secret")) {
		t.Fatal("refresh token visible in stored bytes")
	}
	// Without the key: refused, not misread.
	m0, _ := NewManager(b, PlainCodec{}, nil, testOptions())
	if _, err := m0.load(context.Background(), "c1"); err == nil {
		t.Fatal("encrypted record read without a key")
	}
	// With another key only: refused.
	c2only, _ := NewAEADCodec(key2)
	m2, _ := NewManager(b, c2only, nil, testOptions())
	if _, err := m2.load(context.Background(), "c1"); err == nil {
		t.Fatal("record read with the wrong key")
	}
	// Rotation: new key first, old key still opens old records.
	rot, _ := NewAEADCodec(key2, key1)
	m3, _ := NewManager(b, rot, nil, testOptions())
	got, err := m3.load(context.Background(), "c1")
	if err != nil || got.RefreshToken != "very-secret-refresh-token" {
		t.Fatalf("old record after rotation: %v %v", got, err)
	}
	// A record moved under another id does not decrypt (id is bound).
	_ = b.CompareAndSwap(context.Background(), "c9", 0, 1, raw)
	if _, err := m3.load(context.Background(), "c9"); err == nil {
		t.Fatal("record decrypted under another id")
	}
}

func TestAEADCodecRejectsBadKeys(t *testing.T) {
	if _, err := NewAEADCodec([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := NewAEADCodec(); err == nil {
		t.Fatal("no key accepted")
	}
}

func TestEncryptedRecordsOnDisk(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	codec, _ := NewAEADCodec(key)
	m, err := NewManager(NewStorageBackend(&certmagic.FileStorage{Path: dir}, ""), codec, nil, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	req := newRotating("seed-on-disk-secret", time.Hour)
	c := m.Credential(refreshSpec("seed-on-disk-secret"), req)
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "oauth_gateway", "credentials", c.ID()+".json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{tok.AccessToken, "rt-1", "seed-on-disk-secret"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("%q readable on disk", secret)
		}
	}
	// Without the key the record is refused; with the key rotated (new
	// first, old kept) it still reads.
	plain, _ := NewManager(NewStorageBackend(&certmagic.FileStorage{Path: dir}, ""), PlainCodec{}, nil, testOptions())
	defer plain.Close()
	if _, err := plain.load(context.Background(), c.ID()); err == nil {
		t.Fatal("record read without the key")
	}
	rotated, _ := NewAEADCodec(bytes.Repeat([]byte{8}, 32), key)
	m2, _ := NewManager(NewStorageBackend(&certmagic.FileStorage{Path: dir}, ""), rotated, nil, testOptions())
	defer m2.Close()
	if rec, err := m2.load(context.Background(), c.ID()); err != nil || rec.RefreshToken != "rt-1" {
		t.Fatalf("after key rotation: %v %v", rec, err)
	}
}
