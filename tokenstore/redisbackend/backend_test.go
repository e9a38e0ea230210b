package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore/storetest"
)

func newBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStandaloneContract(t *testing.T) {
	s := redistest.Start(t)
	storetest.BackendContract(t, newBackend(t, Config{URLs: []string{s.URL()}}))
}

func TestClusterContract(t *testing.T) {
	nodes := redistest.StartCluster(t)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	b := newBackend(t, Config{URLs: urls})
	storetest.BackendContract(t, b)
	// Records of many credentials spread over the three masters; each
	// script still touches one slot (hash-tagged keys).
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		if err := b.CompareAndSwap(ctx, fmt.Sprintf("spread-%d", i), 0, 1, []byte("x")); err != nil {
			t.Fatalf("credential %d: %v", i, err)
		}
	}
	ids, err := b.List(ctx)
	if err != nil || len(ids) != 30 {
		t.Fatalf("List = %d %v", len(ids), err)
	}
	// One URL plus the cluster flag also selects Cluster.
	storetest.BackendContract(t, newBackend(t, Config{URLs: urls[:1], Cluster: true, KeyPrefix: "one-url"}))
}

func TestSentinelContract(t *testing.T) {
	_, sentinel := redistest.StartSentinel(t, "gw")
	storetest.BackendContract(t, newBackend(t, Config{URLs: []string{sentinel.URL()}, SentinelMaster: "gw"}))
}

func TestLockOwnershipAndExpiry(t *testing.T) {
	s := redistest.Start(t)
	a := newBackend(t, Config{URLs: []string{s.URL()}})
	b := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	// A holder that died: its lease is set and nobody extends it (taken
	// here without Backend.Lock, which would keep it alive).
	dead, err := a.locker.Obtain(ctx, a.lockKey("c"), 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	// b waits; the dead holder's lease expires; b takes it over.
	start := time.Now()
	releaseB, err := b.Lock(ctx, "c", time.Minute)
	if err != nil {
		t.Fatalf("lock after expiry: %v", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("took a held lock after %s", waited)
	}
	// The dead holder's late release must not free b's lease.
	_ = dead.Release(ctx)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := a.Lock(short, "c", time.Minute); !errors.Is(err, tokenstore.ErrLockTimeout) {
		t.Fatalf("a released b's lock: %v", err)
	}
	releaseB()
}

// A live holder's lease is extended past its TTL while it works, and
// released at once when it is done.
func TestLockIsExtendedWhileHeld(t *testing.T) {
	s := redistest.Start(t)
	a := newBackend(t, Config{URLs: []string{s.URL()}})
	b := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	releaseA, err := a.Lock(ctx, "c", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // three TTLs
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(short, "c", time.Minute); !errors.Is(err, tokenstore.ErrLockTimeout) {
		t.Fatalf("a live holder lost its lease after three TTLs: %v", err)
	}
	releaseA()
	releaseB, err := b.Lock(ctx, "c", time.Minute)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	releaseB()
}

// TryLock makes one attempt: busy while another owner holds the lease
// (without waiting for it), the lease once it is free.
func TestTryLock(t *testing.T) {
	s := redistest.Start(t)
	a := newBackend(t, Config{URLs: []string{s.URL()}})
	b := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	releaseA, err := a.Lock(ctx, "c", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := b.TryLock(ctx, "c", time.Minute); !errors.Is(err, tokenstore.ErrLockBusy) {
		t.Fatalf("TryLock of a held lease: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("TryLock waited %s", waited)
	}
	releaseA()
	releaseB, err := b.TryLock(ctx, "c", time.Minute)
	if err != nil {
		t.Fatalf("TryLock of a free lease: %v", err)
	}
	if _, err := a.TryLock(ctx, "c", time.Minute); !errors.Is(err, tokenstore.ErrLockBusy) {
		t.Fatalf("TryLock of a lease taken by TryLock: %v", err)
	}
	releaseB()
}

// Found by the 60 s chaos run: a lease released while Redis was
// restarting stayed in its append-only file and blocked the credential
// for the lease's whole TTL. The release is retried until it lands.
func TestReleaseDuringRestartLandsAfterIt(t *testing.T) {
	s := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	a := newBackend(t, Config{URLs: []string{s.URL()}})
	b := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx := context.Background()
	release, err := a.Lock(ctx, "c", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	release() // Redis is down: the release fails
	s.Restart()
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	releaseB, err := b.Lock(short, "c", time.Minute)
	if err != nil {
		t.Fatalf("the lease released during the restart still blocks after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	releaseB()
}

func TestPublishSubscribeSurvivesRestart(t *testing.T) {
	s := redistest.Start(t)
	pub := newBackend(t, Config{URLs: []string{s.URL()}})
	sub := newBackend(t, Config{URLs: []string{s.URL()}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 10)
	go func() {
		_ = sub.Subscribe(ctx, func(id string, gen uint64) { got <- fmt.Sprintf("%s:%d", id, gen) })
	}()
	expect := func(want string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			// Publish until received: a subscription (re)connects
			// asynchronously and Redis does not queue messages.
			_ = pub.Publish(ctx, strings.Split(want, ":")[0], 7)
			select {
			case msg := <-got:
				if msg != want {
					t.Fatalf("got %q, want %q", msg, want)
				}
				return
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%q never arrived", want)
			}
		}
	}
	expect("cred-a:7")
	s.Restart()
	expect("cred-b:7")
}

func TestRedisDownFailsFast(t *testing.T) {
	s := redistest.Start(t)
	b := newBackend(t, Config{URLs: []string{s.URL()}, DialTimeout: 300 * time.Millisecond})
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, _, err := b.Get(ctx, "x"); err == nil || errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Get with Redis down: %v", err)
	}
	if err := b.CompareAndSwap(ctx, "x", 0, 1, []byte("d")); err == nil {
		t.Fatal("CAS with Redis down succeeded")
	}
	lockCtx, cancelLock := context.WithTimeout(ctx, time.Second)
	defer cancelLock()
	if _, err := b.Lock(lockCtx, "x", time.Minute); err == nil {
		t.Fatal("Lock with Redis down succeeded")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("calls with Redis down took %s", took)
	}
}

// Two token managers (two instances) on one Redis: the second adopts the
// first's token, and a refresh on one reaches the other's cache.
func TestManagersShareThroughRedis(t *testing.T) {
	s := redistest.Start(t)
	var mu sync.Mutex
	n := 0
	req := requesterFunc(func() (*tokenstore.TokenResult, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return &tokenstore.TokenResult{AccessToken: fmt.Sprintf("at-%d", n), ExpiresIn: time.Hour}, nil
	})
	spec := tokenstore.Spec{Resource: "https://api.example/", ClientID: "c", Grant: tokenstore.GrantClientCredentials, TokenEndpoint: "https://as.example/token"}
	newManager := func() *tokenstore.Credential {
		m, err := tokenstore.NewManager(newBackend(t, Config{URLs: []string{s.URL()}}), nil, nil, tokenstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m.Credential(spec, req)
	}
	a, b := newManager(), newManager()
	ctx := context.Background()
	ta, err := a.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Token(ctx)
	if err != nil || tb.AccessToken != ta.AccessToken {
		t.Fatalf("b got %v %v, want a's token", tb, err)
	}
	time.Sleep(200 * time.Millisecond) // let b's subscription settle
	ta2, err := a.ForceRefresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c := b.Cached(); c != nil && c.AccessToken == ta2.AccessToken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b still caches %v after a refreshed to %s", b.Cached(), ta2.AccessToken)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

type requesterFunc func() (*tokenstore.TokenResult, error)

func (f requesterFunc) RequestToken(context.Context, tokenstore.TokenRequest) (*tokenstore.TokenResult, error) {
	return f()
}

func TestConfigErrorsHideSecrets(t *testing.T) {
	_, err := New(Config{URLs: []string{"http://user:sup3rsecret@host/"}})
	if err == nil || strings.Contains(err.Error(), "sup3rsecret") {
		t.Fatalf("err %v", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("no URL accepted")
	}
}
