package tokenstore

import (
	"fmt"
	"sync"
	"testing"
)

// Concurrent lookups of the same principals get one credential each,
// distinct per principal, all sharing the set's configuration.
func TestPrincipalsOneCredentialPerPrincipal(t *testing.T) {
	m, err := NewManager(&nullBackend{}, nil, nil, Options{CacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	set := m.Principals(Spec{Resource: "https://r.example/mcp", Grant: GrantAuthorizationCode, Principal: "ignored"}, instantRequester{})
	const users, workers = 50, 8
	got := make([][]*Credential, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range users {
				got[w] = append(got[w], set.Credential(fmt.Sprintf("user-%d", i)))
			}
		}()
	}
	wg.Wait()
	seen := map[*Credential]string{}
	for i := range users {
		c := got[0][i]
		for w := 1; w < workers; w++ {
			if got[w][i] != c {
				t.Fatalf("user-%d got two credentials", i)
			}
		}
		if c.Spec().Principal != fmt.Sprintf("user-%d", i) {
			t.Fatalf("credential of user-%d has principal %q", i, c.Spec().Principal)
		}
		if other, dup := seen[c]; dup {
			t.Fatalf("user-%d and %s share a credential", i, other)
		}
		seen[c] = fmt.Sprint(i)
		if c.spec != got[0][0].spec {
			t.Fatal("per-user credentials do not share their configuration")
		}
	}
	if set.Len() != users {
		t.Fatalf("Len = %d, want %d", set.Len(), users)
	}
	set.Release()
	if set.Len() != 0 {
		t.Fatalf("Len after Release = %d", set.Len())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.creds {
		if c.users != 0 {
			t.Fatalf("credential %s still counted %d users after Release", c.id, c.users)
		}
	}
}
