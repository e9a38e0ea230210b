package redisbackend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Security finding "the encrypted store reads only what it sealed
// itself", on a real Redis: what someone with write access to Redis puts
// under a credential's key (a plaintext record, an older sealed value) is
// refused, left as it is, and its refresh token never presented.

// rotatingAS spends each refresh token it accepts and records every one
// presented to it.
type rotatingAS struct {
	mu        sync.Mutex
	valid     map[string]bool
	presented []string
	n         int
}

func (a *rotatingAS) RequestToken(_ context.Context, req tokenstore.TokenRequest) (*tokenstore.TokenResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.presented = append(a.presented, req.RefreshToken)
	if !a.valid[req.RefreshToken] {
		return nil, permanent("invalid_grant")
	}
	delete(a.valid, req.RefreshToken)
	a.n++
	rt := fmt.Sprintf("rt-%d", a.n)
	a.valid[rt] = true
	return &tokenstore.TokenResult{AccessToken: fmt.Sprintf("at-%d", a.n), ExpiresIn: time.Hour, RefreshToken: rt}, nil
}

func (a *rotatingAS) saw(rt string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.presented {
		if p == rt {
			return true
		}
	}
	return false
}

func (a *rotatingAS) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.presented)
}

type permanent string

func (p permanent) Error() string   { return string(p) }
func (p permanent) Permanent() bool { return true }
func (p permanent) Transient() bool { return false }

var sealingSpec = tokenstore.Spec{Resource: "https://api.example/mcp", ClientID: "c1", Grant: tokenstore.GrantRefreshToken,
	TokenEndpoint: "https://as.example/token", SeedRefreshToken: "seed"}

func sealedRedisManager(t *testing.T, s *redistest.Server) *tokenstore.Manager {
	t.Helper()
	codec, err := tokenstore.NewAEADCodec(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	m, err := tokenstore.NewManager(newBackend(t, Config{URLs: []string{s.URL()}}), codec, nil,
		tokenstore.Options{LockWait: 2 * time.Second, RefreshTimeout: 5 * time.Second, RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// dumpKey is the raw content of a Redis key: its type and value.
func dumpKey(t *testing.T, b *Backend, key string) string {
	t.Helper()
	ctx := context.Background()
	typ, err := b.client.Type(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	switch typ {
	case "hash":
		h, err := b.client.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("hash %v", h)
	case "string":
		v, err := b.client.Get(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return "string " + v
	}
	return typ
}

func TestSealingRedisPlantedValueFailsClosed(t *testing.T) {
	s := redistest.Start(t)
	raw := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	as := &rotatingAS{valid: map[string]bool{"seed": true, "attacker-rt": true}}
	m1 := sealedRedisManager(t, s)
	c1 := m1.Credential(sealingSpec, as)
	tok, err := c1.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := raw.recordKey(c1.ID())
	planted, _ := json.Marshal(&tokenstore.Record{ID: c1.ID(), Generation: 1, Grant: tokenstore.GrantRefreshToken,
		ClientID: "c1", Resource: sealingSpec.Resource, TokenEndpoint: sealingSpec.TokenEndpoint,
		RefreshToken: "attacker-rt", UpdatedAt: time.Now()})

	for _, step := range []struct {
		name  string
		plant func() error
	}{
		// The record's data field replaced, its generation kept.
		{"HSET data", func() error { return raw.client.HSet(ctx, key, "data", planted).Err() }},
		// The whole key replaced by a string.
		{"SET", func() error { return raw.client.Set(ctx, key, planted, 0).Err() }},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := step.plant(); err != nil {
				t.Fatal(err)
			}
			before, calls := dumpKey(t, raw, key), as.count()
			// Another instance, which has nothing in memory.
			if _, err := sealedRedisManager(t, s).Credential(sealingSpec, as).Token(ctx); !errors.Is(err, tokenstore.ErrUnreadable) {
				t.Fatalf("another instance: %v, want ErrUnreadable", err)
			}
			// The instance that holds the credential, when its token is
			// rejected.
			if _, err := c1.Invalidate(ctx, tok.AccessToken); !errors.Is(err, tokenstore.ErrUnreadable) {
				t.Fatalf("this instance: %v, want ErrUnreadable", err)
			}
			if as.saw("attacker-rt") || as.count() != calls {
				t.Fatalf("token requests after the plant: %d, attacker's refresh token presented: %v", as.count()-calls, as.saw("attacker-rt"))
			}
			if after := dumpKey(t, raw, key); after != before {
				t.Fatalf("the planted value was changed:\n%s\n%s", before, after)
			}
		})
	}
}

func TestSealingRedisRestoredOldValueFailsClosed(t *testing.T) {
	s := redistest.Start(t)
	raw := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	as := &rotatingAS{valid: map[string]bool{"seed": true}}
	m1 := sealedRedisManager(t, s)
	c1 := m1.Credential(sealingSpec, as)
	if _, err := c1.Token(ctx); err != nil {
		t.Fatal(err)
	}
	key := raw.recordKey(c1.ID())
	oldData, err := raw.client.HGet(ctx, key, "data").Result() // generation 1: rt-1
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c1.ForceRefresh(ctx) // generation 2: rt-1 spent
	if err != nil {
		t.Fatal(err)
	}

	for _, step := range []struct {
		name    string
		restore func() error
	}{
		{"HSET data", func() error { return raw.client.HSet(ctx, key, "data", oldData).Err() }},
		{"SET", func() error { return raw.client.Set(ctx, key, oldData, 0).Err() }},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := step.restore(); err != nil {
				t.Fatal(err)
			}
			before, calls := dumpKey(t, raw, key), as.count()
			if _, err := sealedRedisManager(t, s).Credential(sealingSpec, as).Token(ctx); !errors.Is(err, tokenstore.ErrUnreadable) {
				t.Fatalf("another instance: %v, want ErrUnreadable", err)
			}
			if _, err := c1.Invalidate(ctx, tok.AccessToken); !errors.Is(err, tokenstore.ErrUnreadable) {
				t.Fatalf("this instance: %v, want ErrUnreadable", err)
			}
			if as.count() != calls {
				t.Fatalf("token requests after the restore: %d (spent rt-1 presented: %v)", as.count()-calls, as.saw("rt-1"))
			}
			if after := dumpKey(t, raw, key); after != before {
				t.Fatalf("the restored value was changed:\n%s\n%s", before, after)
			}
		})
	}
}

// The whole record (data and generation) restored from an older DUMP
// while this instance holds the newer pair: memory wins and is written
// back; the spent refresh token is not presented.
func TestSealingRedisRolledBackStoreMemoryWins(t *testing.T) {
	s := redistest.Start(t)
	raw := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	as := &rotatingAS{valid: map[string]bool{"seed": true}}
	c1 := sealedRedisManager(t, s).Credential(sealingSpec, as)
	if _, err := c1.Token(ctx); err != nil {
		t.Fatal(err)
	}
	key := raw.recordKey(c1.ID())
	dump, err := raw.client.Dump(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c1.ForceRefresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.client.RestoreReplace(ctx, key, 0, dump).Err(); err != nil {
		t.Fatal(err)
	}
	if gen, _ := raw.client.HGet(ctx, key, "gen").Result(); gen != "1" {
		t.Fatalf("restored generation %s", gen)
	}
	got, err := c1.Invalidate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken == "at-1" {
		t.Fatal("adopted the rolled-back record's token")
	}
	if want := []string{"seed", "rt-1", "rt-2"}; !reflect.DeepEqual(as.presented, want) {
		t.Fatalf("presented %v, want %v", as.presented, want)
	}
	if gen, _ := raw.client.HGet(ctx, key, "gen").Result(); gen != "3" {
		t.Fatalf("generation %s after the write-back, want 3", gen)
	}
	if t2, err := sealedRedisManager(t, s).Credential(sealingSpec, as).Token(ctx); err != nil || t2.AccessToken != got.AccessToken {
		t.Fatalf("another instance after the write-back: %v %v", t2, err)
	}
}
