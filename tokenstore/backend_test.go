package tokenstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

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
