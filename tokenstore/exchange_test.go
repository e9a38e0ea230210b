package tokenstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeExchange answers exchanges with a token naming the subject token,
// or the error set for it.
type fakeExchange struct {
	calls atomic.Int32
	mu    sync.Mutex
	fail  map[string]error
}

func (f *fakeExchange) fn(_ context.Context, subject, _ string) (*TokenResult, error) {
	f.calls.Add(1)
	f.mu.Lock()
	err := f.fail[subject]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &TokenResult{AccessToken: "at-for-" + subject, TokenType: "Bearer", ExpiresIn: time.Hour}, nil
}

func TestExchangeCacheServesOnlyTheSubjectTokenItWasObtainedWith(t *testing.T) {
	f := &fakeExchange{}
	x := NewExchangeCache(ExchangeOptions{}, f.fn)
	ctx := context.Background()
	alice := Subject{Key: "alice", Token: "id-token-alice"}
	tok, cached, err := x.Token(ctx, alice, "")
	if err != nil || cached || tok.AccessToken != "at-for-id-token-alice" {
		t.Fatalf("first: %v cached=%v %v", tok, cached, err)
	}
	if tok, cached, _ = x.Token(ctx, alice, ""); !cached || tok.AccessToken != "at-for-id-token-alice" {
		t.Fatalf("second request was not served from the cache")
	}
	// A forged token naming alice's subject key is exchanged (and would
	// be refused by the server), never answered with alice's token.
	forged := Subject{Key: "alice", Token: "forged-token"}
	if tok, cached, _ = x.Token(ctx, forged, ""); cached || tok.AccessToken != "at-for-forged-token" {
		t.Fatalf("a different subject token got %q (cached=%v)", tok.AccessToken, cached)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d exchanges, want 2", n)
	}
	// A token the upstream rejected is exchanged again.
	if tok, cached, _ = x.Token(ctx, forged, "at-for-forged-token"); cached {
		t.Fatalf("the rejected token was served again")
	}
}

func TestExchangeCacheStopsAtTheSubjectTokensExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	f := &fakeExchange{}
	x := NewExchangeCache(ExchangeOptions{Now: clock}, f.fn)
	s := Subject{Key: "bob", Token: "id-bob", Expiry: now.Add(time.Minute)}
	if _, _, err := x.Token(context.Background(), s, ""); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute) // the access token lives an hour; the ID token ended
	if _, cached, _ := x.Token(context.Background(), s, ""); cached {
		t.Fatal("the exchanged token was reused past the subject token's expiry")
	}
}

func TestExchangeCacheRemembersFailures(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	rejected := testErr{msg: "invalid_grant", perm: true}
	config := testErr{msg: "unauthorized_client"} // neither permanent nor transient
	f := &fakeExchange{fail: map[string]error{"bad": rejected, "cfg": config}}
	x := NewExchangeCache(ExchangeOptions{Now: clock}, f.fn)
	ctx := context.Background()
	for range 3 {
		_, _, err := x.Token(ctx, Subject{Key: "k", Token: "bad"}, "")
		if !errors.Is(err, ErrSubjectRejected) {
			t.Fatalf("refused subject token: %v", err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("a refused subject token was sent %d times, want once", n)
	}
	for range 3 {
		if _, _, err := x.Token(ctx, Subject{Key: "k2", Token: "cfg"}, ""); err == nil {
			t.Fatal("configuration fault not returned")
		}
	}
	// Every subject waits out a configuration fault: one request a minute.
	if _, _, err := x.Token(ctx, Subject{Key: "other", Token: "fine"}, ""); err == nil {
		t.Fatal("an exchange was sent during the configuration fault's wait")
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d exchanges, want 2", n)
	}
	now = now.Add(61 * time.Second)
	if _, _, err := x.Token(ctx, Subject{Key: "other", Token: "fine"}, ""); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	if _, _, err := x.Token(ctx, Subject{}, ""); !errors.Is(err, ErrNoSubjectToken) {
		t.Fatalf("no subject token: %v", err)
	}
}

// The number of subjects held is bounded.
func TestExchangeCacheIsBounded(t *testing.T) {
	f := &fakeExchange{}
	x := NewExchangeCache(ExchangeOptions{Size: 10}, f.fn)
	for i := range 100 {
		s := Subject{Key: string(rune('a' + i)), Token: string(rune('a' + i))}
		if _, _, err := x.Token(context.Background(), s, ""); err != nil {
			t.Fatal(err)
		}
	}
	if x.Len() != 10 {
		t.Fatalf("holds %d subjects, want 10", x.Len())
	}
}
