package tokenstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// Outstanding authorizations are bounded: a client can start flows (a
// link opened cross-site starts one), and each start stores a pending
// record, so without a bound anyone could grow the store at will. Each
// pending record is counted in two indexes, the credential's (one user
// of one handler) and the handler's, both kept in the store beside the
// records, so every instance of a fleet counts the same flows.

// PendingLimits bound the outstanding authorizations of a handler.
type PendingLimits struct {
	// Handler names the handler's index (any stable string: the
	// credential id without principal does).
	Handler string
	// PerCredential is how many flows one credential (one user) may have
	// outstanding; a new start beyond it replaces that user's oldest.
	PerCredential int
	// PerHandler is how many flows the handler may have outstanding; a
	// start beyond it is refused with ErrTooManyPending.
	PerHandler int
}

// Default bounds (documented with `max_pending_authorizations`).
const (
	DefaultPendingPerCredential = 5
	DefaultPendingPerHandler    = 1000
)

// ErrTooManyPending is returned by SavePendingBounded when the handler
// has as many outstanding authorizations as it may: new starts wait until
// some complete or expire.
var ErrTooManyPending = errors.New("tokenstore: too many authorizations in progress")

// pendingIndex lists outstanding flows: each pending record's store id
// and expiry (Unix seconds).
type pendingIndex struct {
	Entries []pendingEntry `json:"entries"`
}

type pendingEntry struct {
	ID      string `json:"id"`
	Expires int64  `json:"exp"`
}

const pendingIndexPrefix = "pendidx-"

func pendingIndexID(kind, name string) string {
	sum := sha256.Sum256([]byte("oauth_gateway pending index\x00" + kind + "\x00" + name))
	return pendingIndexPrefix + hex.EncodeToString(sum[:16])
}

// SavePendingBounded stores p under state as SavePending does, within
// limits: the handler's bound is checked first (ErrTooManyPending), then
// the credential's oldest flows beyond its bound are dropped.
func (m *Manager) SavePendingBounded(ctx context.Context, state string, p *PendingAuthorization, limits PendingLimits) error {
	if limits.PerCredential <= 0 {
		limits.PerCredential = DefaultPendingPerCredential
	}
	if limits.PerHandler <= 0 {
		limits.PerHandler = DefaultPendingPerHandler
	}
	id := pendingID(state)
	exp := p.ExpiresAt.Unix()
	p.Handler = limits.Handler
	if err := m.updatePendingIndex(ctx, pendingIndexID("handler", limits.Handler), func(idx *pendingIndex) ([]string, error) {
		if len(idx.Entries) >= limits.PerHandler {
			return nil, fmt.Errorf("%w: %d outstanding for this handler", ErrTooManyPending, len(idx.Entries))
		}
		idx.Entries = append(idx.Entries, pendingEntry{ID: id, Expires: exp})
		return nil, nil
	}); err != nil {
		return err
	}
	var dropped []string
	if err := m.updatePendingIndex(ctx, pendingIndexID("credential", p.CredentialID), func(idx *pendingIndex) ([]string, error) {
		idx.Entries = append(idx.Entries, pendingEntry{ID: id, Expires: exp})
		if over := len(idx.Entries) - limits.PerCredential; over > 0 {
			for _, e := range idx.Entries[:over] {
				dropped = append(dropped, e.ID)
			}
			idx.Entries = slices.Delete(idx.Entries, 0, over)
		}
		return dropped, nil
	}); err != nil {
		m.forgetPending(ctx, limits.Handler, "", id)
		return err
	}
	for _, old := range dropped {
		_ = m.backend.Delete(ctx, old)
		m.forgetPending(ctx, limits.Handler, "", old)
	}
	if err := m.SavePending(ctx, state, p); err != nil {
		m.forgetPending(ctx, limits.Handler, p.CredentialID, id)
		return err
	}
	return nil
}

// forgetPending removes a flow's entries from its indexes ("" skips one).
func (m *Manager) forgetPending(ctx context.Context, handler, credentialID, id string) {
	drop := func(idx *pendingIndex) ([]string, error) {
		idx.Entries = slices.DeleteFunc(idx.Entries, func(e pendingEntry) bool { return e.ID == id })
		return nil, nil
	}
	if handler != "" {
		_ = m.updatePendingIndex(ctx, pendingIndexID("handler", handler), drop)
	}
	if credentialID != "" {
		_ = m.updatePendingIndex(ctx, pendingIndexID("credential", credentialID), drop)
	}
}

// updatePendingIndex applies change to the index under its lock, after
// dropping expired entries; an index left empty is deleted.
func (m *Manager) updatePendingIndex(ctx context.Context, indexID string, change func(*pendingIndex) ([]string, error)) error {
	release, err := m.backend.Lock(ctx, indexID, m.opts.LockTTL)
	if err != nil {
		return err
	}
	defer release()
	var idx pendingIndex
	if err := m.getAux(ctx, KindPendingIndex, indexID, &idx); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	now := m.now().Unix()
	idx.Entries = slices.DeleteFunc(idx.Entries, func(e pendingEntry) bool { return e.Expires <= now })
	if _, err := change(&idx); err != nil {
		return err
	}
	if len(idx.Entries) == 0 {
		if err := m.backend.Delete(ctx, indexID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	}
	return m.putAux(ctx, KindPendingIndex, indexID, &idx)
}
