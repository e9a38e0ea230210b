package tokenstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// Security finding "the encrypted store reads only what it sealed
// itself": with encryption_key set, a record the gateway did not seal
// (planted plaintext), a sealed record moved to another key, and an older
// sealed generation copied back are unreadable and left as they are; a
// store that went back to an older generation than the process holds is
// overwritten from memory.

var sealingKey = bytes.Repeat([]byte{5}, 32)

// sealingBackends are the backends the checks must hold for: the memory
// backend, and Caddy storage (the data directory) with its envelope.
func sealingBackends(t *testing.T) map[string]func() Backend {
	return map[string]func() Backend{
		"memory": func() Backend { return NewMemoryBackend() },
		"file": func() Backend {
			dir := t.TempDir()
			return NewStorageBackend(&certmagic.FileStorage{Path: dir}, "")
		},
	}
}

func sealedManager(t *testing.T, b Backend) *Manager {
	t.Helper()
	codec, err := NewAEADCodec(sealingKey)
	if err != nil {
		t.Fatal(err)
	}
	return newTestManagerCodec(t, b, codec)
}

// snapshot is what a backend holds under id.
type snapshot struct {
	gen  uint64
	data []byte
}

func take(t *testing.T, b Backend, id string) snapshot {
	t.Helper()
	gen, data, err := b.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	return snapshot{gen, data}
}

// overwrite sets what id holds, as someone with write access to the
// store would (the backend's own compare-and-swap over the current
// generation).
func overwrite(t *testing.T, b Backend, id string, gen uint64, data []byte) {
	t.Helper()
	cur, _, err := b.Get(context.Background(), id)
	if errors.Is(err, ErrNotFound) {
		cur = 0
	} else if err != nil {
		t.Fatal(err)
	}
	if err := b.CompareAndSwap(context.Background(), id, cur, gen, data); err != nil {
		t.Fatalf("overwriting %s: %v", id, err)
	}
}

func assertUntouched(t *testing.T, b Backend, id string, want snapshot) {
	t.Helper()
	got := take(t, b, id)
	if got.gen != want.gen || !bytes.Equal(got.data, want.data) {
		t.Fatalf("%s was changed: generation %d -> %d, %q -> %q", id, want.gen, got.gen, want.data, got.data)
	}
}

func plaintextRecord(t *testing.T, id string, gen uint64, refreshToken string) []byte {
	t.Helper()
	b, err := json.Marshal(&Record{ID: id, Generation: gen, Grant: GrantRefreshToken, ClientID: "c1",
		Resource: "https://api.example/mcp", Issuer: "https://attacker.example", RefreshToken: refreshToken,
		AccessToken: "attacker-at", Expiry: time.Now().Add(time.Hour), UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealingPlantedPlaintextCredentialIsUnreadable(t *testing.T) {
	for name, newBackend := range sealingBackends(t) {
		t.Run(name+"/no record yet", func(t *testing.T) {
			b := newBackend()
			spec := refreshSpec("seed")
			id := spec.ID()
			overwrite(t, b, id, 1, plaintextRecord(t, id, 1, "attacker-rt"))
			planted := take(t, b, id)
			req := newRotating("seed", time.Hour)
			req.valid["attacker-rt"] = true
			m := sealedManager(t, b)
			if _, err := m.Credential(spec, req).Token(context.Background()); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("planted plaintext credential: %v, want ErrUnreadable", err)
			}
			if _, err := m.load(context.Background(), id); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("load: %v, want ErrUnreadable", err)
			}
			if n := req.calls.Load(); n != 0 {
				t.Fatalf("%d token requests after a planted record", n)
			}
			assertUntouched(t, b, id, planted)
		})
		t.Run(name+"/over a sealed record", func(t *testing.T) {
			b := newBackend()
			spec := refreshSpec("seed")
			id := spec.ID()
			req := newRotating("seed", time.Hour)
			req.valid["attacker-rt"] = true
			m1 := sealedManager(t, b)
			c1 := m1.Credential(spec, req)
			tok, err := c1.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			gen := take(t, b, id).gen
			overwrite(t, b, id, gen, plaintextRecord(t, id, gen, "attacker-rt"))
			planted := take(t, b, id)
			calls := req.calls.Load()
			// Another instance (nothing in memory), and this one when its
			// token is rejected: both fail closed.
			m2 := sealedManager(t, b)
			if _, err := m2.Credential(spec, req).Token(context.Background()); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("another instance: %v, want ErrUnreadable", err)
			}
			if _, err := c1.Invalidate(context.Background(), tok.AccessToken); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("the instance that wrote it: %v, want ErrUnreadable", err)
			}
			if req.calls.Load() != calls || req.lastReq.RefreshToken == "attacker-rt" {
				t.Fatal("a token was requested from the planted record")
			}
			assertUntouched(t, b, id, planted)
		})
	}
}

func TestSealingPlantedPlaintextPendingIsUnreadable(t *testing.T) {
	for name, newBackend := range sealingBackends(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend()
			m := sealedManager(t, b)
			ctx := context.Background()
			id := pendingID("state-planted")
			plain, _ := json.Marshal(&PendingAuthorization{CredentialID: "victim", Principal: "alice", CodeVerifier: "attacker-verifier",
				Issuer: "https://attacker.example", ExpiresAt: time.Now().Add(time.Hour)})
			overwrite(t, b, id, 1, plain)
			planted := take(t, b, id)
			if p, err := m.TakePending(ctx, "state-planted"); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("planted pending authorization: %+v %v, want ErrUnreadable", p, err)
			}
			assertUntouched(t, b, id, planted)
			// Collection leaves it for the operator too.
			m.collectPending(ctx)
			assertUntouched(t, b, id, planted)
		})
	}
}

func TestSealingPlantedPlaintextRegistrationIsUnreadable(t *testing.T) {
	for name, newBackend := range sealingBackends(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend()
			m := sealedManager(t, b)
			ctx := context.Background()
			const issuer, redirect = "https://as.example", "https://gw.example/callback"
			id := registrationID(issuer, redirect)
			plain, _ := json.Marshal(&Registration{Issuer: issuer, RedirectURI: redirect, ClientID: "attacker-client", ClientSecret: "attacker-secret", RegisteredAt: time.Now()})
			overwrite(t, b, id, 1, plain)
			planted := take(t, b, id)
			registered := false
			reg, err := m.Registered(ctx, issuer, redirect, "", func(context.Context) (*Registration, error) {
				registered = true
				return &Registration{ClientID: "fresh"}, nil
			})
			if !errors.Is(err, ErrUnreadable) {
				t.Fatalf("planted registration: %+v %v, want ErrUnreadable", reg, err)
			}
			if registered {
				t.Fatal("registered again over the unreadable registration")
			}
			assertUntouched(t, b, id, planted)
		})
	}
}

// A sealed value copied under another key (another credential, another
// state, another issuer's registration) does not open. The id was bound
// before; this guards the new binding.
func TestSealingValueCopiedToAnotherKeyIsUnreadable(t *testing.T) {
	for name, newBackend := range sealingBackends(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend()
			m := sealedManager(t, b)
			ctx := context.Background()

			specA, specB := refreshSpec("seed-a"), refreshSpec("seed-b")
			specB.Resource = "https://other.example/mcp"
			req := newRotating("seed-a", time.Hour)
			req.valid["seed-b"] = true
			for _, s := range []Spec{specA, specB} {
				if _, err := m.Credential(s, req).Token(ctx); err != nil {
					t.Fatal(err)
				}
			}
			a := take(t, b, specA.ID())
			overwrite(t, b, specB.ID(), take(t, b, specB.ID()).gen, a.data)
			moved := take(t, b, specB.ID())
			if _, err := sealedManager(t, b).Credential(specB, req).Token(ctx); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("credential copied from another key: %v, want ErrUnreadable", err)
			}
			assertUntouched(t, b, specB.ID(), moved)

			p := &PendingAuthorization{CredentialID: "c", CodeVerifier: "v", ExpiresAt: time.Now().Add(time.Hour)}
			_ = m.SavePending(ctx, "state-a", p)
			_ = m.SavePending(ctx, "state-b", p)
			overwrite(t, b, pendingID("state-b"), 1, take(t, b, pendingID("state-a")).data)
			if _, err := m.TakePending(ctx, "state-b"); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("pending authorization copied from another key: %v, want ErrUnreadable", err)
			}

			register := func(id string) func(context.Context) (*Registration, error) {
				return func(context.Context) (*Registration, error) { return &Registration{ClientID: id}, nil }
			}
			_, _ = m.Registered(ctx, "https://as1.example", "https://gw/cb", "", register("one"))
			_, _ = m.Registered(ctx, "https://as2.example", "https://gw/cb", "", register("two"))
			id2 := registrationID("https://as2.example", "https://gw/cb")
			overwrite(t, b, id2, take(t, b, id2).gen, take(t, b, registrationID("https://as1.example", "https://gw/cb")).data)
			if _, err := m.Registered(ctx, "https://as2.example", "https://gw/cb", "", register("three")); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("registration copied from another key: %v, want ErrUnreadable", err)
			}
		})
	}
}

// An older sealed value copied back over a newer generation (what the
// backend reports stays the newer one) does not open: the spent refresh
// token it holds is never presented.
func TestSealingOlderGenerationCopiedBackIsUnreadable(t *testing.T) {
	for name, newBackend := range sealingBackends(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend()
			spec := refreshSpec("seed")
			id := spec.ID()
			req := newRotating("seed", time.Hour)
			m := sealedManager(t, b)
			c := m.Credential(spec, req)
			ctx := context.Background()
			tok, err := c.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			old := take(t, b, id)
			if tok, err = c.ForceRefresh(ctx); err != nil {
				t.Fatal(err)
			}
			now := take(t, b, id)
			if now.gen <= old.gen {
				t.Fatalf("generation %d after %d", now.gen, old.gen)
			}
			overwrite(t, b, id, now.gen, old.data)
			restored := take(t, b, id)
			calls := req.calls.Load()

			if _, err := m.load(ctx, id); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("load: %v, want ErrUnreadable", err)
			}
			if _, err := sealedManager(t, b).Credential(spec, req).Token(ctx); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("another instance: %v, want ErrUnreadable", err)
			}
			if _, err := c.Invalidate(ctx, tok.AccessToken); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("the instance that wrote it: %v, want ErrUnreadable", err)
			}
			if req.calls.Load() != calls || req.reuse.Load() != 0 {
				t.Fatalf("token requests after the copy: %d (reuse %d)", req.calls.Load()-calls, req.reuse.Load())
			}
			assertUntouched(t, b, id, restored)
		})
	}
	t.Run("registration", func(t *testing.T) {
		b := NewMemoryBackend()
		m := sealedManager(t, b)
		ctx := context.Background()
		const issuer, redirect = "https://as.example", "https://gw/cb"
		id := registrationID(issuer, redirect)
		n := 0
		register := func(context.Context) (*Registration, error) {
			n++
			return &Registration{ClientID: []string{"", "first", "second", "third"}[n]}, nil
		}
		if _, err := m.Registered(ctx, issuer, redirect, "", register); err != nil {
			t.Fatal(err)
		}
		old := take(t, b, id)
		if reg, err := m.Registered(ctx, issuer, redirect, "first", register); err != nil || reg.ClientID != "second" {
			t.Fatalf("re-registration: %+v %v", reg, err)
		}
		overwrite(t, b, id, take(t, b, id).gen, old.data)
		if reg, err := m.Registered(ctx, issuer, redirect, "", register); !errors.Is(err, ErrUnreadable) {
			t.Fatalf("older registration copied back: %+v %v, want ErrUnreadable", reg, err)
		}
	})
}

// A store that went back to an older generation than the process holds
// (a restored backup, an older append-only file): the newer pair in
// memory wins and is written back, as when the store comes back empty.
func TestSealingStoreBehindMemoryMemoryWins(t *testing.T) {
	for name, newBackend := range sealingBackends(t) {
		for _, sealed := range []bool{true, false} {
			label := name + "/plaintext"
			if sealed {
				label = name + "/sealed"
			}
			t.Run(label, func(t *testing.T) {
				b := newBackend()
				m := newTestManager(t, b, testOptions())
				if sealed {
					m = sealedManager(t, b)
				}
				spec := refreshSpec("seed")
				id := spec.ID()
				req := newRotating("seed", time.Hour)
				c := m.Credential(spec, req)
				ctx := context.Background()
				if _, err := c.Token(ctx); err != nil {
					t.Fatal(err)
				}
				old := take(t, b, id) // generation 1: rt-1
				tok, err := c.ForceRefresh(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ahead := take(t, b, id).gen
				overwrite(t, b, id, old.gen, old.data) // the whole store goes back

				got, err := c.Invalidate(ctx, tok.AccessToken)
				if err != nil {
					t.Fatal(err)
				}
				if got.AccessToken == "at-1" {
					t.Fatal("adopted the older token the store went back to")
				}
				if req.reuse.Load() != 0 || req.lastReq.RefreshToken != "rt-2" {
					t.Fatalf("presented %q (reuse %d), want the newer rt-2 from memory", req.lastReq.RefreshToken, req.reuse.Load())
				}
				rec := storedRecord(t, m, id)
				if rec.Generation <= ahead || rec.RefreshToken != "rt-3" || rec.AccessToken != got.AccessToken {
					t.Fatalf("written back: generation %d (was ahead at %d), %q", rec.Generation, ahead, rec.RefreshToken)
				}
				// Another instance reads the written-back pair.
				other := newTestManager(t, b, testOptions())
				if sealed {
					other = sealedManager(t, b)
				}
				if t2, err := other.Credential(spec, req).Token(ctx); err != nil || t2.AccessToken != got.AccessToken {
					t.Fatalf("another instance after the write-back: %v %v", t2, err)
				}
			})
		}
	}
}

// revokingRequester records the tokens it is asked to revoke.
type revokingRequester struct {
	*rotatingRequester
	revoked []string
}

func (r *revokingRequester) Revoke(_ context.Context, _, token, _ string) error {
	r.revoked = append(r.revoked, token)
	return nil
}

// Operator actions after the store went back start from the newer record
// in memory too: a revocation revokes the live refresh token (not the
// spent one the store went back to), and a rewrite takes a generation
// above the one memory holds, never one already used.
func TestSealingStoreBehindMemoryOperatorActions(t *testing.T) {
	b := NewMemoryBackend()
	m := sealedManager(t, b)
	spec := refreshSpec("seed")
	id := spec.ID()
	req := &revokingRequester{rotatingRequester: newRotating("seed", time.Hour)}
	c := m.Credential(spec, req)
	ctx := context.Background()
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	old := take(t, b, id)
	if _, err := c.ForceRefresh(ctx); err != nil {
		t.Fatal(err)
	}
	ahead := take(t, b, id).gen
	overwrite(t, b, id, old.gen, old.data)

	if err := c.Replace(ctx, "rt-uploaded"); err != nil {
		t.Fatal(err)
	}
	if gen := take(t, b, id).gen; gen <= ahead {
		t.Fatalf("rewrite after the store went back wrote generation %d, memory held %d", gen, ahead)
	}

	overwrite(t, b, id, old.gen, old.data)
	if _, err := c.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if len(req.revoked) == 0 || req.revoked[0] != "rt-uploaded" {
		t.Fatalf("revoked %v, want the live refresh token rt-uploaded first", req.revoked)
	}
}
