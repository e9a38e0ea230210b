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
	// The credential's index, then within its lock the handler's (always
	// in this order): a start that replaces the user's oldest flow does
	// not grow the handler's count, so a user is never refused for flows
	// they are about to drop.
	var dropped []string
	err := m.updatePendingIndex(ctx, pendingIndexID("credential", p.CredentialID), func(cidx *pendingIndex) ([]string, error) {
		keep := cidx.Entries
		if over := len(keep) + 1 - limits.PerCredential; over > 0 {
			for _, e := range keep[:over] {
				dropped = append(dropped, e.ID)
			}
			keep = keep[over:]
		}
		err := m.updatePendingIndex(ctx, pendingIndexID("handler", limits.Handler), func(hidx *pendingIndex) ([]string, error) {
			hidx.Entries = slices.DeleteFunc(hidx.Entries, func(e pendingEntry) bool { return slices.Contains(dropped, e.ID) })
			if len(hidx.Entries) >= limits.PerHandler {
				return nil, fmt.Errorf("%w: %d outstanding for this handler", ErrTooManyPending, len(hidx.Entries))
			}
			hidx.Entries = append(hidx.Entries, pendingEntry{ID: id, Expires: exp})
			return nil, nil
		})
		if err != nil {
			dropped = nil
			return nil, err
		}
		cidx.Entries = append(slices.Clone(keep), pendingEntry{ID: id, Expires: exp})
		return dropped, nil
	})
	if err != nil {
		return err
	}
	for _, old := range dropped {
		_ = m.backend.Delete(ctx, old)
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
