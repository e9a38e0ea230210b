package oauthclient

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// PKCE (RFC 7636) with the S256 method only: "plain" gives no protection
// against an attacker who can read the authorization request, and every
// server this gateway talks to supports S256 (RFC 9700 §2.1.1).

// randomBytes is the entropy of verifiers and state values: 32 bytes, the
// RFC 7636 §4.1 recommendation, which encode to 43 base64url characters.
const randomBytes = 32

// NewPKCE returns a fresh verifier (43 chars of base64url from 32 random
// bytes) and its S256 challenge.
func NewPKCE() (verifier, challenge string, err error) {
	verifier, err = randomString()
	if err != nil {
		return "", "", err
	}
	return verifier, PKCEChallenge(verifier), nil
}

// PKCEChallenge returns BASE64URL(SHA-256(verifier)) without padding
// (RFC 7636 §4.2, code_challenge_method=S256).
func PKCEChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewState returns an unguessable opaque value (32 random bytes,
// base64url) for `state` and ids.
func NewState() (string, error) {
	return randomString()
}

// randomString is 32 bytes from crypto/rand, base64url without padding.
// Its alphabet (A-Z a-z 0-9 - _) is within RFC 7636's unreserved set and
// needs no escaping in URLs, forms or cookies.
func randomString() (string, error) {
	b := make([]byte, randomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("oauthclient: reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
