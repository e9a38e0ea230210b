package oauthclient

import (
	"strings"
	"testing"
)

// FuzzSubjectOf feeds SubjectOf arbitrary text: it reads untrusted
// subject tokens on the request path, so it must never panic, must
// refuse anything over the size bound, and must report nothing for
// what it does not take as a JWT. Seeds are in
// testdata/fuzz/FuzzSubjectOf.
func FuzzSubjectOf(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTk5OTk5OTk5OX0.c2ln")
	f.Add("at_opaque")
	f.Fuzz(func(t *testing.T, token string) {
		sub, exp, ok := SubjectOf(token)
		if !ok {
			if sub != "" || !exp.IsZero() {
				t.Fatalf("not a JWT, yet subject %q expiry %v", sub, exp)
			}
			return
		}
		if len(token) > maxSubjectTokenBytes {
			t.Fatalf("accepted %d bytes", len(token))
		}
		if strings.Count(token, ".") != 2 {
			t.Fatalf("accepted a token with %d dots", strings.Count(token, "."))
		}
	})
}
