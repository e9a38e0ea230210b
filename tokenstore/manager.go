package tokenstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"
)

// Options tune a Manager. Zero values take the defaults noted.
type Options struct {
	// DecodeKey parses a credential's stored DPoP key (Record.DPoPKey)
	// for its tokens; nil: tokens are presented as Bearer tokens.
	DecodeKey func([]byte) (any, error)
	// RefreshSkew is how long before expiry a token is refreshed in the
	// background (default 60s, capped at a fifth of the token's lifetime).
	RefreshSkew time.Duration
	// CacheSize bounds how many credentials keep their token in memory
	// (default 10000). Evicted credentials reload from the store.
	CacheSize int
	// LockTTL is the refresh lease. Backends that share it across
	// instances (Redis) extend it while its holder works. It bounds how
	// long a holder that died blocks the others, and also how long a
	// holder cut off from the store after spending a refresh token keeps
	// the others from presenting the spent one (its write lands when the
	// link returns): 30 s covers the partitions the fault suite injects;
	// a longer cut after a spent refresh token cannot be made safe by a
	// lease (default 30s).
	LockTTL time.Duration
	// LockWait bounds the wait for another holder's lease (default 20s).
	LockWait time.Duration
	// RefreshTimeout bounds one whole refresh: lock, store, token
	// requests with retries (default 60s).
	RefreshTimeout time.Duration
	// Attempts is how many times one refresh tries a transiently failing
	// token endpoint (default 3); RetryBase is the first wait (default
	// 200ms, then x4); MaxRetryWait caps a server's Retry-After (2s).
	Attempts     int
	RetryBase    time.Duration
	MaxRetryWait time.Duration
	// BackoffBase and BackoffMax bound the wait between failed refreshes
	// (defaults 1s and 30s, doubling).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// DeadRecheck is how often a dead credential re-reads the store for a
	// replacement (default 10s); its rejected token is never re-sent.
	DeadRecheck time.Duration
	// DeadRetryClientCredentials is how long a rejected client-credentials
	// credential waits before asking again (default 60s).
	DeadRetryClientCredentials time.Duration
	// ReleasedGrace is how long a credential no configuration names any
	// more is kept before it is collected (default 24h): its memory is
	// freed, and its stored record deleted once it has not changed for
	// that long either (another instance may still use it).
	ReleasedGrace time.Duration
	// GCInterval is how often collection runs (default 10m).
	GCInterval time.Duration
	// ReactiveRefreshInterval: a token obtained because the upstream
	// rejected the previous one, and rejected again within this interval,
	// is not refreshed again (default 10s); the rejection reaches the
	// client. It stops an upstream that rejects every token from driving
	// the token endpoint one to one.
	ReactiveRefreshInterval time.Duration
	// ConfigRetry is how long a credential waits after a fault only a
	// configuration change can fix (unsupported_grant_type,
	// unauthorized_client, invalid_scope, an unreadable stored record)
	// before trying again (default 60s).
	ConfigRetry time.Duration
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RefreshSkew, 60*time.Second)
	def(&o.LockTTL, 30*time.Second)
	def(&o.LockWait, 20*time.Second)
	def(&o.RefreshTimeout, 60*time.Second)
	def(&o.RetryBase, 200*time.Millisecond)
	def(&o.MaxRetryWait, 2*time.Second)
	def(&o.BackoffBase, time.Second)
	def(&o.BackoffMax, 30*time.Second)
	def(&o.DeadRecheck, 10*time.Second)
	def(&o.DeadRetryClientCredentials, 60*time.Second)
	def(&o.ReleasedGrace, 24*time.Hour)
	def(&o.GCInterval, 10*time.Minute)
	def(&o.ReactiveRefreshInterval, 10*time.Second)
	def(&o.ConfigRetry, 60*time.Second)
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Manager owns the credentials of one backend: their live state, the
// bounded in-memory cache of their tokens, and the backend itself.
type Manager struct {
	backend Backend
	codec   Codec
	logger  *zap.Logger
	opts    Options
	now     func() time.Time
	hooks   Hooks
	events  eventBus

	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	creds map[string]*Credential
	// lru bounds token material held in memory. The hot path never
	// touches it (a handler reads its credential's atomic token), so
	// credentials do not contend on it; eviction drops the token, and the
	// next request reloads it from the store.
	lru *lru.Cache[string, *Credential]
	// scheduler runs every credential's proactive refresh checks.
	scheduler *refreshScheduler
	// tryLocker is the backend when it can take a lease in one attempt
	// (shared stores), else nil: proactive refreshes use it.
	tryLocker TryLocker
	// specs interns the configuration shared by per-user credentials
	// (guarded by mu); see internSpec.
	specs map[string]*Spec
}

// NewManager returns a Manager over backend. codec may be nil (PlainCodec).
func NewManager(backend Backend, codec Codec, logger *zap.Logger, opts Options) (*Manager, error) {
	opts.setDefaults()
	if codec == nil {
		codec = PlainCodec{}
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	m := &Manager{
		backend: backend,
		codec:   codec,
		logger:  logger,
		opts:    opts,
		now:     opts.Now,
		creds:   make(map[string]*Credential),
		specs:   make(map[string]*Spec),

		scheduler: newRefreshScheduler(),
	}
	m.tryLocker, _ = backend.(TryLocker)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	cache, err := lru.NewWithEvict(opts.CacheSize, func(_ string, c *Credential) {
		c.evict()
	})
	if err != nil {
		return nil, fmt.Errorf("tokenstore: creating cache: %w", err)
	}
	m.lru = cache
	go m.gcLoop()
	if n, ok := backend.(Notifier); ok {
		go func() {
			if err := n.Subscribe(m.ctx, m.onRemoteGeneration); err != nil && m.ctx.Err() == nil {
				logger.Error("credential change subscription ended", zap.Error(err))
			}
		}()
	}
	return m, nil
}

// SetHooks installs observers (metrics). Call before use.
func (m *Manager) SetHooks(h Hooks) { m.hooks = h }

// Credential returns the live credential for spec, creating it on first
// use. A credential whose configuration changed (another seed, scopes) is
// replaced; its requester is updated either way.
func (m *Manager) Credential(spec Spec, r Requester) *Credential {
	return m.credential(spec, &requesterBox{r})
}

// credential is Credential with the requester already boxed, so that the
// credentials of a Principals set share one box.
func (m *Manager) credential(spec Spec, box *requesterBox) *Credential {
	id := spec.ID()
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.creds[id]
	if c == nil || c.seedHash != spec.seedHash() || !slices.Equal(c.spec.Scopes, spec.Scopes) {
		next := &Credential{id: id, spec: m.internSpec(spec), principal: spec.Principal, seedHash: spec.seedHash(), m: m}
		if c != nil {
			next.users = c.users // the old config's handlers still count
		}
		c = next
		m.creds[id] = c
	}
	c.users++
	c.releasedAt = 0
	c.requester.Store(box)
	return c
}

// internSpec returns a shared copy of spec without its principal: the
// per-user credentials of one handler differ only in principal. The
// table is bounded; clearing it only costs later credentials a copy of
// their own. The caller holds m.mu.
func (m *Manager) internSpec(spec Spec) *Spec {
	spec.Principal = ""
	key := strings.Join(append([]string{spec.ID(), spec.seedHash()}, spec.Scopes...), "\x00")
	if s := m.specs[key]; s != nil {
		return s
	}
	if len(m.specs) >= 256 {
		clear(m.specs)
	}
	s := &spec
	m.specs[key] = s
	return s
}

// Credentials returns every live credential, sorted by id.
func (m *Manager) Credentials() []*Credential {
	m.mu.Lock()
	out := make([]*Credential, 0, len(m.creds))
	for _, c := range m.creds {
		out = append(out, c)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// newToken is the token of rec, bound to its DPoP key when it has one.
//
// Its refresh point is moved by a random part of the first half of the
// window before it must not be used any more: each instance of a fleet
// holds its own Token for a stored record, so each picks another point,
// and the first to reach it refreshes while the others adopt the result
// (published) instead of all contending for the lock at the same moment.
func (m *Manager) newToken(rec *Record) (*Token, error) {
	t, err := newBoundToken(rec, m.opts.RefreshSkew, m.opts.DecodeKey)
	if err != nil {
		return nil, err
	}
	if window := t.usableUntil - t.refreshAt; t.refreshAt != timeForever && window > 1 {
		t.refreshAt += rand.Int64N(window / 2)
	}
	return t, nil
}

// Close stops background work and closes the backend.
func (m *Manager) Close() error {
	m.cancel()
	m.scheduler.close()
	return m.backend.Close()
}

// touch records that c holds token material, evicting the least recently
// refreshed credential's token when over capacity.
func (m *Manager) touch(c *Credential) { m.lru.Add(c.id, c) }

// evict drops the token from memory; a pending (unpersisted) record is
// kept, since it may hold the only copy of a refresh token.
func (c *Credential) evict() {
	c.current.Store(nil)
	c.mu.Lock()
	if !c.pending {
		c.rec = nil
	}
	c.mu.Unlock()
}

// onRemoteGeneration drops a cached token that another instance replaced.
func (m *Manager) onRemoteGeneration(id string, gen uint64) {
	m.mu.Lock()
	c := m.creds[id]
	m.mu.Unlock()
	if c == nil {
		return
	}
	t := c.current.Load()
	if t == nil || t.Generation >= gen {
		return // nothing cached here, or this instance wrote it
	}
	m.emit(c, "remote", gen)
	// Load the new token in the background, so no request waits for it;
	// until it is in, requests keep the old token (still valid at the
	// server unless it was revoked, and then a 401 refreshes).
	go func() {
		ctx, cancel := context.WithTimeout(m.ctx, m.opts.LockWait)
		defer cancel()
		rec, err := m.load(ctx, id)
		if err != nil || rec.Generation < gen || rec.Dead || rec.AccessToken == "" {
			// Could not read it: drop the stale token; the next request
			// reconciles under the lock.
			c.current.CompareAndSwap(t, nil)
			return
		}
		fresh, err := m.newToken(rec)
		if err == nil && m.now().UnixNano() < fresh.usableUntil && c.current.CompareAndSwap(t, fresh) {
			c.scheduleRefresh(fresh)
			c.mu.Lock()
			if !c.pending {
				c.rec, c.storedGen = rec, rec.Generation
			}
			c.mu.Unlock()
			m.hooks.adopted(c)
			m.logger.Debug("adopted token written by another instance", m.logFields(c, "generation", rec.Generation)...)
		}
	}()
}

// load reads the credential record under id. Its generation is the one
// the backend reports; with encryption_key set the sealed record is bound
// to it (a record sealed as another generation does not open).
func (m *Manager) load(ctx context.Context, id string) (*Record, error) {
	gen, plain, err := m.open(ctx, KindCredential, id)
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(id, plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	rec.Generation = gen
	return rec, nil
}

// open reads and decrypts what is stored under id: a credential record
// or an auxiliary one (pending authorization, registration), opened for
// its kind, id and the generation the backend reports. Data that exists
// but does not open is ErrUnreadable; so is what a backend reports as
// unreadable (a value that is no record of its own).
func (m *Manager) open(ctx context.Context, kind RecordKind, id string) (uint64, []byte, error) {
	gen, data, err := m.backend.Get(ctx, id)
	if err != nil {
		return 0, nil, err
	}
	plain, err := m.codec.Open(Binding{Kind: kind, ID: id, Generation: gen}, data)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return gen, plain, nil
}

// save writes rec over prevGen as generation rec.Generation, sealed for
// that generation.
func (m *Manager) save(ctx context.Context, rec *Record, prevGen uint64) error {
	plain, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	sealed, err := m.codec.Seal(Binding{Kind: KindCredential, ID: rec.ID, Generation: rec.Generation}, plain)
	if err != nil {
		return err
	}
	return m.backend.CompareAndSwap(ctx, rec.ID, prevGen, rec.Generation, sealed)
}

func (m *Manager) publish(c *Credential, gen uint64) {
	n, ok := m.backend.(Notifier)
	if !ok {
		return
	}
	if err := n.Publish(m.ctx, c.id, gen); err != nil {
		m.logger.Warn("could not announce new credential generation", m.logFields(c, "error", err.Error())...)
	}
}

// logFields are the fields every credential log line carries. They never
// include tokens or secrets.
func (m *Manager) logFields(c *Credential, kv ...any) []zap.Field {
	fields := []zap.Field{zap.String("credential", c.id), zap.String("resource", c.spec.Resource), zap.String("grant", c.spec.Grant)}
	for i := 0; i+1 < len(kv); i += 2 {
		fields = append(fields, zap.Any(kv[i].(string), kv[i+1]))
	}
	return fields
}
