package tokenstore

import (
	"hash/maphash"
	"sync"
)

// Principals is one handler's per-user credentials, found by principal
// (the user, or the subject of a token exchange). Lookups run on every
// request, so they take a read lock on one of several shards rather than
// the manager's mutex, and an entry costs a plain map slot (about 40
// bytes) where a sync.Map entry costs about 130: at 100,000 users that
// is part of the 1 KiB budget per credential.
type Principals struct {
	m    *Manager
	spec Spec // Principal is set per lookup
	box  *requesterBox
	seed maphash.Seed

	shards [principalShards]principalShard
}

const principalShards = 32

type principalShard struct {
	mu     sync.RWMutex
	byName map[string]*Credential
}

// Principals returns an empty set of per-principal credentials of spec
// (whose Principal is ignored), all using r for token requests.
func (m *Manager) Principals(spec Spec, r Requester) *Principals {
	spec.Principal = ""
	return &Principals{m: m, spec: spec, box: &requesterBox{r}, seed: maphash.MakeSeed()}
}

// Credential returns principal's credential, creating it (and counting
// it as used by this set) on first use. principal must not be empty.
func (p *Principals) Credential(principal string) *Credential {
	sh := &p.shards[maphash.String(p.seed, principal)%principalShards]
	sh.mu.RLock()
	c := sh.byName[principal]
	sh.mu.RUnlock()
	if c != nil {
		return c
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.byName[principal]; c != nil {
		return c
	}
	spec := p.spec
	spec.Principal = principal
	c = p.m.credential(spec, p.box)
	if sh.byName == nil {
		sh.byName = make(map[string]*Credential)
	}
	// Key by the credential's own copy of the principal, so the map
	// holds no second copy of the string.
	sh.byName[c.principal] = c
	return c
}

// Len is the number of principals seen.
func (p *Principals) Len() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.RLock()
		n += len(sh.byName)
		sh.mu.RUnlock()
	}
	return n
}

// Release gives back every credential of the set (a config unload); the
// manager collects them after its grace period.
func (p *Principals) Release() {
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for _, c := range sh.byName {
			p.m.Release(c)
		}
		sh.byName = nil
		sh.mu.Unlock()
	}
}
