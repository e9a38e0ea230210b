package oauthclient

import (
	"strings"
	"testing"
)

func TestPKCEChallengeRFC7636AppendixB(t *testing.T) {
	tests := []struct{ verifier, challenge string }{
		// The RFC's example (also: printf %s VERIFIER | openssl dgst -sha256 -binary | base64url).
		{"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		// A minimum-length verifier (RFC 7636 §4.1), computed with openssl.
		{strings.Repeat("a", 43), "ZtNPunH49FD35FWYhT5Tv8I7vRKQJ8uxMaL0_9eHjNA"},
	}
	for _, tt := range tests {
		if got := PKCEChallenge(tt.verifier); got != tt.challenge {
			t.Errorf("PKCEChallenge(%q) = %q, want %q", tt.verifier, got, tt.challenge)
		}
	}
}

// isUnreservedBase64URL reports whether s uses only the base64url alphabet,
// a subset of RFC 7636 §4.1's unreserved characters.
func isUnreservedBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func TestNewPKCEAndState(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		v, c, err := NewPKCE()
		if err != nil {
			t.Fatal(err)
		}
		// RFC 7636 §4.1: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~].
		if len(v) != 43 || !isUnreservedBase64URL(v) {
			t.Fatalf("verifier %q: length %d or charset wrong", v, len(v))
		}
		if c != PKCEChallenge(v) || len(c) != 43 || !isUnreservedBase64URL(c) {
			t.Fatalf("challenge %q does not match verifier", c)
		}
		s, err := NewState()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 43 || !isUnreservedBase64URL(s) {
			t.Fatalf("state %q: length or charset wrong", s)
		}
		for _, x := range []string{v, s} {
			if seen[x] {
				t.Fatalf("repeated random value %q", x)
			}
			seen[x] = true
		}
	}
}
