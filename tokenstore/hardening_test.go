package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// pinnedRequester answers every token request as issuer, and records the
// revocations it is asked for with the pin they carried.
type pinnedRequester struct {
	*rotatingRequester
	issuer string

	mu          sync.Mutex
	revocations []string // "pinned|hint"
	revokeErr   error
}

func (p *pinnedRequester) RequestToken(ctx context.Context, req TokenRequest) (*TokenResult, error) {
	res, err := p.rotatingRequester.RequestToken(ctx, req)
	if err == nil {
		res.Issuer = p.issuer
	}
	return res, err
}

func (p *pinnedRequester) Revoke(_ context.Context, pinned, _, hint string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revokeErr != nil {
		return p.revokeErr
	}
	p.revocations = append(p.revocations, pinned+"|"+hint)
	return nil
}

func discoverySpec(seed string) Spec {
	return Spec{Resource: "https://api.example/mcp", ClientID: "c1", Grant: GrantRefreshToken, SeedRefreshToken: seed}
}

// Issue 11 finding 1: the pin outlives revoke, forget, re-seed and a new
// configured seed; only Unpin moves it.
func TestPinOutlivesRevokeForgetAndReseed(t *testing.T) {
	req := &pinnedRequester{rotatingRequester: newRotating("seed", time.Hour), issuer: "https://as1.example"}
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(discoverySpec("seed"), req)
	ctx := context.Background()
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedRecord(t, m, c.ID()).Issuer; got != "https://as1.example" {
		t.Fatalf("pinned issuer %q", got)
	}
	if _, err := c.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(req.revocations, ","); got != "https://as1.example|refresh_token,https://as1.example|access_token" {
		t.Fatalf("revocations %s", got)
	}
	rec := storedRecord(t, m, c.ID())
	if rec.Issuer != "https://as1.example" || rec.RefreshToken != "" || !rec.Revoked {
		t.Fatalf("after revoke: %+v", rec)
	}
	// Clients are told an operator revoked it.
	if _, err := c.Token(ctx); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrDead) {
		t.Fatalf("after revoke: %v, want ErrRevoked", err)
	}

	// A re-seed by upload keeps the pin, and the next request carries it.
	req.issuer = "https://as2.example" // the upstream now names another server
	req.valid["rt-new"] = true
	if err := c.Replace(ctx, "rt-new"); err != nil {
		t.Fatal(err)
	}
	if got := storedRecord(t, m, c.ID()).Issuer; got != "https://as1.example" {
		t.Fatalf("re-seed moved the pin to %q", got)
	}
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if req.lastReq.PinnedIssuer != "https://as1.example" {
		t.Fatalf("token request carried pin %q", req.lastReq.PinnedIssuer)
	}

	// A new configured seed (under discovery) keeps it too.
	req.valid["seed2"] = true
	c2 := m.Credential(discoverySpec("seed2"), req)
	if _, err := c2.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if req.lastReq.PinnedIssuer != "https://as1.example" {
		t.Fatalf("new seed: token request carried pin %q", req.lastReq.PinnedIssuer)
	}

	// Only an operator's unpin moves it.
	if err := c2.Unpin(ctx, "https://as2.example"); err != nil {
		t.Fatal(err)
	}
	if rec := storedRecord(t, m, c2.ID()); rec.Issuer != "https://as2.example" || rec.RefreshToken != "" || !rec.Dead {
		t.Fatalf("after unpin: %+v", rec)
	}
}

// Issue 13 finding 2: revoke revokes or changes nothing.
func TestRevokeChangesNothingWhenItCannotRevoke(t *testing.T) {
	req := &pinnedRequester{rotatingRequester: newRotating("seed", time.Hour), issuer: "https://as1.example"}
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(discoverySpec("seed"), req)
	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := storedRecord(t, m, c.ID())
	for _, revokeErr := range []error{ErrNoRevocationEndpoint, errors.New("server refused")} {
		req.revokeErr = revokeErr
		if _, err := c.Revoke(ctx); !errors.Is(err, revokeErr) {
			t.Fatalf("revoke: %v, want %v", err, revokeErr)
		}
		after := storedRecord(t, m, c.ID())
		if after.Generation != before.Generation || after.RefreshToken != before.RefreshToken {
			t.Fatalf("a failed revoke changed the record: %+v", after)
		}
		if got, err := c.Token(ctx); err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("a failed revoke changed the token: %v %v", got, err)
		}
	}
}

// Issue 11 finding 12: a record that exists but cannot be read is never
// overwritten, and the credential fails closed.
func TestUnreadableRecordIsNeverOverwritten(t *testing.T) {
	key1, key2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	backend := NewMemoryBackend()
	codec1, _ := NewAEADCodec(key1)
	m1, _ := NewManager(backend, codec1, nil, testOptions())
	req := &pinnedRequester{rotatingRequester: newRotating("", time.Hour), issuer: "https://as1.example"}
	spec := ccSpec()
	spec.TokenEndpoint = ""
	ctx := context.Background()
	if _, err := m1.Credential(spec, req).Token(ctx); err != nil {
		t.Fatal(err)
	}
	m1.cancel()
	gen, sealed, _ := backend.Get(ctx, spec.ID())

	codec2, _ := NewAEADCodec(key2) // the wrong key
	m2 := newTestManagerCodec(t, backend, codec2)
	calls := req.calls.Load()
	_, err := m2.Credential(spec, req).Token(ctx)
	if !errors.Is(err, ErrUnreadable) {
		t.Fatalf("wrong key: %v, want ErrUnreadable", err)
	}
	if req.calls.Load() != calls {
		t.Fatal("a token was requested without the stored pin")
	}
	gen2, sealed2, _ := backend.Get(ctx, spec.ID())
	if gen2 != gen || !bytes.Equal(sealed, sealed2) {
		t.Fatal("the unreadable record was overwritten")
	}
}

// credentialBinding is the binding of what backend holds under id.
func credentialBinding(t *testing.T, b Backend, id string) Binding {
	t.Helper()
	gen, _, err := b.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return Binding{Kind: KindCredential, ID: id, Generation: gen}
}

func newTestManagerCodec(t *testing.T, b Backend, codec Codec) *Manager {
	t.Helper()
	m, err := NewManager(b, codec, nil, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cancel() })
	return m
}

// Issue 11, "Also": key rotation. Records written under the old key are
// readable with a new key first, re-encrypted on their next write, and
// nothing is lost when the old key is then removed.
func TestEncryptionKeyRotation(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	backend := NewMemoryBackend()
	ctx := context.Background()
	req := newRotating("seed", time.Hour)
	spec := refreshSpec("seed")

	codecOld, _ := NewAEADCodec(oldKey)
	m1 := newTestManagerCodec(t, backend, codecOld)
	if _, err := m1.Credential(spec, req).Token(ctx); err != nil {
		t.Fatal(err)
	}
	m1.cancel()
	_, sealedOld, _ := backend.Get(ctx, spec.ID())

	codecBoth, _ := NewAEADCodec(newKey, oldKey)
	m2 := newTestManagerCodec(t, backend, codecBoth)
	c2 := m2.Credential(spec, req)
	tok, err := c2.Token(ctx)
	if err != nil || tok.AccessToken != "at-1" {
		t.Fatalf("old record not readable after rotation: %v %v", tok, err)
	}
	if req.calls.Load() != 1 {
		t.Fatal("rotation cost a token request")
	}
	if _, err := codecBoth.Open(credentialBinding(t, backend, spec.ID()), sealedOld); err != nil {
		t.Fatal(err)
	}
	// The next write re-encrypts with the new key.
	if _, err := c2.Invalidate(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	m2.cancel()
	_, sealedNew, _ := backend.Get(ctx, spec.ID())
	codecNewOnly, _ := NewAEADCodec(newKey)
	if _, err := codecNewOnly.Open(credentialBinding(t, backend, spec.ID()), sealedNew); err != nil {
		t.Fatalf("record not re-encrypted with the new key: %v", err)
	}

	// The old key removed: nothing lost, no token request.
	m3 := newTestManagerCodec(t, backend, codecNewOnly)
	tok3, err := m3.Credential(spec, req).Token(ctx)
	if err != nil || tok3.AccessToken != "at-2" || req.calls.Load() != 2 {
		t.Fatalf("after removing the old key: %v %v (calls %d)", tok3, err, req.calls.Load())
	}
	if req.reuse.Load() != 0 {
		t.Fatal("refresh token reused")
	}
}

// Issue 11 finding 8: an upstream that rejects every token does not drive
// the token endpoint one to one.
func TestReactiveRefreshIsThrottled(t *testing.T) {
	req := newRotating("", time.Hour)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(ccSpec(), req)
	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, err = c.Invalidate(ctx, tok.AccessToken) // the first rejection refreshes
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := c.Invalidate(ctx, tok.AccessToken); !errors.Is(err, ErrRejectedAgain) {
			t.Fatalf("rejection %d: %v, want ErrRejectedAgain", i, err)
		}
	}
	if got := req.calls.Load(); got != 2 {
		t.Fatalf("token requests = %d, want 2", got)
	}
}

// Issue 11 finding 7: the scope set is capped.
func TestStepUpScopeCap(t *testing.T) {
	req := newRotating("", time.Hour)
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	c := m.Credential(ccSpec(), req)
	ctx := context.Background()
	tok, _ := c.Token(ctx)
	var many []string
	for i := 0; i < MaxScopes; i++ {
		many = append(many, fmt.Sprintf("s%d", i))
	}
	if _, err := c.StepUp(ctx, many, tok.AccessToken); !errors.Is(err, ErrScopeLimit) {
		t.Fatalf("step-up to %d scopes: %v, want ErrScopeLimit", MaxScopes+1, err)
	}
	if req.calls.Load() != 1 {
		t.Fatal("a capped step-up requested a token")
	}
}

// Issue 11 finding 10: a token without expires_in is not used forever.
func TestTokenWithoutExpiryGetsAssumedLifetime(t *testing.T) {
	now := time.Now()
	tok := newToken(&Record{AccessToken: "x", IssuedAt: now}, time.Minute)
	refreshIn, usableFor := time.Duration(tok.refreshAt-now.UnixNano()), time.Duration(tok.usableUntil-now.UnixNano())
	if refreshIn >= AssumedLifetime || refreshIn < 0 {
		t.Fatalf("refreshAt %v, want within the assumed lifetime", refreshIn)
	}
	if usableFor >= AssumedLifetime {
		t.Fatalf("usableUntil %v", usableFor)
	}
}
