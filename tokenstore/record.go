package tokenstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Record is the persisted state of one credential. It is what backends
// store (encrypted when an encryption key is configured).
type Record struct {
	// ID is the credential's stable identifier (see Spec.ID).
	ID string `json:"id"`
	// Generation increases by one on every write; writes are
	// compare-and-swap on it. A sealed record is bound to it (Binding).
	Generation uint64 `json:"generation"`

	Resource string `json:"resource,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Grant    string `json:"grant,omitempty"`
	// Issuer is the authorization server this credential is pinned to
	// (configured or first discovered). Its secrets are never sent to
	// another one.
	Issuer        string `json:"issuer,omitempty"`
	TokenEndpoint string `json:"token_endpoint,omitempty"`

	// Scopes is the scope set tokens are requested with, including any
	// scopes added by step-up.
	Scopes []string `json:"scopes,omitempty"`

	// SeedHash fingerprints the configured seed refresh token, so a
	// changed seed in the config replaces the stored credential while an
	// unchanged one never overrides a rotated token.
	SeedHash string `json:"seed_hash,omitempty"`

	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	IssuedAt     time.Time `json:"issued_at"`
	Expiry       time.Time `json:"expiry"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	// DPoPKey is the credential's DPoP private key (RFC 9449), opaque to
	// the store; tokens and refresh tokens may be bound to it, so it is
	// kept with them (encrypted with the record under encryption_key).
	DPoPKey string `json:"dpop_key,omitempty"`
	// GrantedScope is the scope the server said it granted with the
	// current access token ("" when it did not say).
	GrantedScope string `json:"granted_scope,omitempty"`

	// Dead is set when the authorization server rejected the grant for
	// good (invalid_grant); LastError says why, without secrets.
	Dead bool `json:"dead,omitempty"`
	// Revoked is set when an operator revoked or forgot the credential:
	// its tokens are gone, but the record (and with it the issuer pin)
	// stays, so a later seed or upload cannot be sent anywhere else.
	Revoked   bool      `json:"revoked,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// clone returns a deep copy, so a record handed to a backend or kept as a
// pending write cannot be changed behind its owner's back.
func (r *Record) clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Scopes = append([]string(nil), r.Scopes...)
	return &c
}

func encodeRecord(r *Record) ([]byte, error) {
	return json.Marshal(r)
}

func decodeRecord(id string, b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("tokenstore: decoding record %s: %w", id, err)
	}
	if r.ID != id {
		// A record copied or swapped under another key must not be
		// used for this credential.
		return nil, fmt.Errorf("tokenstore: record under key %s claims id %q", id, r.ID)
	}
	return &r, nil
}

// grantedScopes is the scope set of the current access token: what the
// server said it granted, else what was requested (RFC 6749 §5.1).
func (r *Record) grantedScopes() []string {
	if r.GrantedScope != "" {
		return strings.Fields(r.GrantedScope)
	}
	return append([]string(nil), r.Scopes...)
}
