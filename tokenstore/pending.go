package tokenstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// PendingAuthorization is an authorization-code flow between its start and
// its callback. It is kept in the store (encrypted like credentials), so
// the callback may land on any instance of a fleet; it is single-use and
// expires.
type PendingAuthorization struct {
	// CredentialID is the credential the flow authorizes.
	CredentialID string `json:"credential_id"`
	// Principal is the user who started the flow ("" for a shared
	// credential started by an operator); the callback must come from
	// the same one.
	Principal string `json:"principal,omitempty"`
	// Operator is set when an operator started the flow (admin API, CLI).
	Operator bool `json:"operator,omitempty"`
	// CodeVerifier is the PKCE verifier (RFC 7636).
	CodeVerifier string `json:"code_verifier"`
	// Issuer is the authorization server the flow went to; the response's
	// iss (RFC 9207) must equal it, and the credential is pinned to it.
	Issuer      string   `json:"issuer"`
	IssRequired bool     `json:"iss_required,omitempty"`
	ClientID    string   `json:"client_id"`
	RedirectURI string   `json:"redirect_uri"`
	Scopes      []string `json:"scopes,omitempty"`
	// Handler names the index of the handler that began the flow
	// (PendingLimits.Handler), so its completion frees the place.
	Handler string `json:"handler,omitempty"`
	// ReturnTo is the same-origin path to send the browser back to.
	ReturnTo  string    `json:"return_to,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Errors of TakePending.
var (
	ErrPendingUnknown = errors.New("tokenstore: unknown or already used authorization state")
	ErrPendingExpired = errors.New("tokenstore: the authorization state expired")
)

const pendingPrefix = "pending-"

// pendingID is the store key of a state: a hash, so the state itself (a
// bearer secret for the flow) is not a key anyone listing the store sees.
func pendingID(state string) string {
	sum := sha256.Sum256([]byte("oauth_gateway pending\x00" + state))
	return pendingPrefix + hex.EncodeToString(sum[:16])
}

// SavePending stores p under state until p.ExpiresAt.
func (m *Manager) SavePending(ctx context.Context, state string, p *PendingAuthorization) error {
	return m.putAux(ctx, KindPending, pendingID(state), p)
}

// TakePending returns and deletes the flow stored under state: a state
// is used at most once, even when two callbacks race (the lock decides).
func (m *Manager) TakePending(ctx context.Context, state string) (*PendingAuthorization, error) {
	id := pendingID(state)
	release, err := m.backend.Lock(ctx, id, m.opts.LockTTL)
	if err != nil {
		return nil, err
	}
	defer release()
	var p PendingAuthorization
	if err := m.getAux(ctx, KindPending, id, &p); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrPendingUnknown
		}
		return nil, err
	}
	if err := m.backend.Delete(ctx, id); err != nil {
		return nil, err
	}
	m.forgetPending(ctx, p.Handler, p.CredentialID, id)
	if !m.now().Before(p.ExpiresAt) {
		return nil, ErrPendingExpired
	}
	return &p, nil
}

// collectPending deletes expired flows. A flow whose record cannot be
// read is left for an operator, like every unreadable record: with
// encryption_key set it may be planted, and deleting it would only hide
// that (it is never used: TakePending refuses it).
func (m *Manager) collectPending(ctx context.Context) {
	ids, err := m.backend.List(ctx)
	if err != nil {
		return
	}
	now := m.now()
	var unreadable []string
	var lastErr error
	for _, id := range ids {
		if strings.HasPrefix(id, pendingIndexPrefix) {
			// Drops expired entries; an index left empty goes.
			_ = m.updatePendingIndex(ctx, id, func(*pendingIndex) ([]string, error) { return nil, nil })
			continue
		}
		if !strings.HasPrefix(id, pendingPrefix) {
			continue
		}
		var p PendingAuthorization
		err := m.getAux(ctx, KindPending, id, &p)
		switch {
		case err == nil && !now.Before(p.ExpiresAt):
			_ = m.backend.Delete(ctx, id)
		case errors.Is(err, ErrUnreadable):
			unreadable, lastErr = append(unreadable, id), err
		}
	}
	if len(unreadable) > 0 {
		m.logger.Warn("stored authorization states cannot be read; leaving them (check encryption_key, or remove the records)",
			zap.Int("count", len(unreadable)), zap.Strings("records", unreadable[:min(len(unreadable), 10)]), zap.Error(lastErr))
	}
}

// putAux stores v (JSON, sealed by the codec for kind, id and the
// generation it is written as) under id as a new record.
func (m *Manager) putAux(ctx context.Context, kind RecordKind, id string, v any) error {
	plain, err := json.Marshal(v)
	if err != nil {
		return err
	}
	gen, _, err := m.backend.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	sealed, err := m.codec.Seal(Binding{Kind: kind, ID: id, Generation: gen + 1}, plain)
	if err != nil {
		return err
	}
	return m.backend.CompareAndSwap(ctx, id, gen, gen+1, sealed)
}

// getAux reads the record of kind under id into v.
func (m *Manager) getAux(ctx context.Context, kind RecordKind, id string, v any) error {
	_, plain, err := m.open(ctx, kind, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return nil
}
