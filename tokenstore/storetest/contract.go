// Package storetest holds the behaviour every tokenstore.Backend must
// have, as a test any backend package can run against a real instance.
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// BackendContract exercises b: absent records, compare-and-swap on the
// generation, listing, the lease lock (exclusive, released, waits bounded
// by the context) and deletion. It uses ids starting with "contract-".
func BackendContract(t *testing.T, b tokenstore.Backend) {
	t.Helper()
	ctx := context.Background()
	id := "contract-c1"
	if _, _, err := b.Get(ctx, id); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Get of absent: %v", err)
	}
	if err := b.CompareAndSwap(ctx, id, 0, 1, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := b.CompareAndSwap(ctx, id, 0, 1, []byte("again")); !errors.Is(err, tokenstore.ErrConflict) {
		t.Fatalf("CAS over existing with prev 0: %v", err)
	}
	if err := b.CompareAndSwap(ctx, id, 1, 2, []byte("two\x00bytes")); err != nil {
		t.Fatal(err)
	}
	gen, data, err := b.Get(ctx, id)
	if err != nil || gen != 2 || string(data) != "two\x00bytes" {
		t.Fatalf("Get = %d %q %v", gen, data, err)
	}
	if err := b.CompareAndSwap(ctx, id, 1, 3, []byte("stale")); !errors.Is(err, tokenstore.ErrConflict) {
		t.Fatalf("stale CAS: %v", err)
	}
	ids, err := b.List(ctx)
	if err != nil || !contains(ids, id) {
		t.Fatalf("List = %v %v", ids, err)
	}

	release, err := b.Lock(ctx, id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	start := time.Now()
	_, err = b.Lock(short, id, time.Minute)
	cancel()
	if err == nil {
		t.Fatal("second Lock while held succeeded")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("Lock waited %s past its context", time.Since(start))
	}
	release()
	release2, err := b.Lock(ctx, id, time.Minute)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	release2()

	if err := b.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(ctx, id); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if ids, _ := b.List(ctx); contains(ids, id) {
		t.Fatalf("List after Delete still has %s", id)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
