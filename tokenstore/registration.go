package tokenstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"go.uber.org/zap"
)

// Registration is an OAuth client the gateway registered for itself at an
// authorization server (RFC 7591). One registration serves every user and
// every instance, for one (issuer, redirect_uri); it is kept in the store
// (encrypted like credentials) and reused across restarts.
type Registration struct {
	Issuer                  string    `json:"issuer"`
	RedirectURI             string    `json:"redirect_uri"`
	ClientID                string    `json:"client_id"`
	ClientSecret            string    `json:"client_secret,omitempty"`
	TokenEndpointAuthMethod string    `json:"token_endpoint_auth_method,omitempty"`
	ExpiresAt               time.Time `json:"expires_at,omitzero"` // zero: the secret never expires
	RegisteredAt            time.Time `json:"registered_at"`
}

// Expired reports whether the registration's secret has expired at now.
func (r *Registration) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

const registrationPrefix = "client-"

func registrationID(issuer, redirectURI string) string {
	sum := sha256.Sum256([]byte("oauth_gateway registration\x00" + issuer + "\x00" + redirectURI))
	return registrationPrefix + hex.EncodeToString(sum[:16])
}

// Registered returns the client registered for (issuer, redirectURI),
// registering one with register when there is none, when it expired, or
// when stale is the client_id the server just rejected. The fleet-wide
// lock makes it one registration for all instances.
func (m *Manager) Registered(ctx context.Context, issuer, redirectURI, stale string,
	register func(context.Context) (*Registration, error)) (*Registration, error) {
	id := registrationID(issuer, redirectURI)
	release, err := m.backend.Lock(ctx, id, m.opts.LockTTL)
	if err != nil {
		return nil, err
	}
	defer release()
	var reg Registration
	err = m.getAux(ctx, KindRegistration, id, &reg)
	switch {
	case err == nil && !reg.Expired(m.now()) && (stale == "" || reg.ClientID != stale):
		return &reg, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return nil, err
	}
	fresh, err := register(ctx)
	if err != nil {
		return nil, err
	}
	fresh.Issuer, fresh.RedirectURI, fresh.RegisteredAt = issuer, redirectURI, m.now()
	if err := m.putAux(ctx, KindRegistration, id, fresh); err != nil {
		return nil, err
	}
	m.logger.Info("registered the gateway as an OAuth client", zap.String("issuer", issuer), zap.String("client_id", fresh.ClientID))
	return fresh, nil
}
