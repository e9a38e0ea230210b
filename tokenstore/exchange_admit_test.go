package tokenstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Admit is asked only for exchanges that reach the server: not for a
// cached token, a remembered refusal, or requests joining an exchange
// under way; its refusal is returned as is and not remembered.
func TestExchangeCacheAdmitsOnlyExchangesThatReachTheServer(t *testing.T) {
	rejected := testErr{msg: "invalid_grant", perm: true}
	release := make(chan struct{})
	f := &fakeExchange{fail: map[string]error{"bad": rejected}}
	slow := func(ctx context.Context, subject, key string) (*TokenResult, error) {
		if subject == "slow" {
			<-release
		}
		return f.fn(ctx, subject, key)
	}
	var asked atomic.Int32
	var clients sync.Map
	refuse := errors.New("over the limit")
	var refusing atomic.Bool
	x := NewExchangeCache(ExchangeOptions{Admit: func(s Subject) error {
		asked.Add(1)
		clients.Store(s.Client, true)
		if refusing.Load() {
			return refuse
		}
		return nil
	}}, slow)
	ctx := context.Background()

	good := Subject{Key: "alice", Token: "good", Client: "addr:192.0.2.1"}
	for range 5 {
		if _, _, err := x.Token(ctx, good, ""); err != nil {
			t.Fatal(err)
		}
	}
	bad := Subject{Key: "mallory", Token: "bad", Client: "addr:192.0.2.2"}
	for range 5 {
		if _, _, err := x.Token(ctx, bad, ""); !errors.Is(err, ErrSubjectRejected) {
			t.Fatalf("refused token: %v", err)
		}
	}
	if n := asked.Load(); n != 2 {
		t.Fatalf("Admit asked %d times for one cached token and one remembered refusal, want 2", n)
	}
	if _, ok := clients.Load("addr:192.0.2.2"); !ok {
		t.Fatal("Admit did not get the subject's client")
	}

	// 20 requests for one new subject token at once: one exchange, one
	// question.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := x.Token(ctx, Subject{Key: "bob", Token: "slow"}, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := asked.Load(); n != 3 {
		t.Fatalf("Admit asked %d times, want 3 (one for 20 requests joining one exchange)", n)
	}

	// Refused: returned as is, nothing sent, nothing remembered.
	refusing.Store(true)
	calls := f.calls.Load()
	if _, _, err := x.Token(ctx, Subject{Key: "carol", Token: "new"}, ""); !errors.Is(err, refuse) {
		t.Fatalf("refused by Admit: %v", err)
	}
	if f.calls.Load() != calls {
		t.Fatal("an exchange Admit refused was sent")
	}
	refusing.Store(false)
	if _, _, err := x.Token(ctx, Subject{Key: "carol", Token: "new"}, ""); err != nil {
		t.Fatalf("after Admit allows it again: %v (a refusal by Admit must not be remembered)", err)
	}
}
