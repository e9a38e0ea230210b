package tokenstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The issuer binding of an authorization-code credential lives in the
// store: a second manager on the same backend (a restart, another
// instance) reads it before any flow, and a completed authorization from
// another server never moves it.
func TestBindingIsReadFromTheStoreAndNeverMoved(t *testing.T) {
	ctx := context.Background()
	backend := NewMemoryBackend()
	spec := Spec{Resource: "https://mcp.example.com/mcp", Grant: GrantAuthorizationCode, Principal: "alice"}
	first := newTestManager(t, backend, testOptions())
	cred := first.Principals(spec, instantRequester{}).Credential("alice")
	if got, err := cred.BoundIssuer(ctx); err != nil || got != "" {
		t.Fatalf("before consent: %q, %v", got, err)
	}
	res := &TokenResult{AccessToken: "at-a", RefreshToken: "rt-a", TokenType: "Bearer", ExpiresIn: time.Hour}
	if err := cred.Authorized(ctx, res, "https://a.example.com", []string{"read"}); err != nil {
		t.Fatal(err)
	}

	// A fresh process: nothing in memory, the binding from the store.
	second := newTestManager(t, backend, testOptions())
	again := second.Principals(spec, instantRequester{}).Credential("alice")
	if st := again.Status(); st.Issuer != "" {
		t.Fatalf("memory already holds %q; this test needs a credential never loaded", st.Issuer)
	}
	if got, err := again.BoundIssuer(ctx); err != nil || got != "https://a.example.com" {
		t.Fatalf("bound issuer from the store: %q, %v", got, err)
	}

	// An authorization from B does not move the binding or the tokens.
	other := &TokenResult{AccessToken: "at-b", RefreshToken: "rt-b", TokenType: "Bearer", ExpiresIn: time.Hour}
	if err := again.Authorized(ctx, other, "https://b.example.com", nil); !errors.Is(err, ErrIssuerBound) {
		t.Fatalf("authorization from another issuer: %v, want ErrIssuerBound", err)
	}
	rec := storedRecord(t, second, again.ID())
	if rec.Issuer != "https://a.example.com" || rec.RefreshToken != "rt-a" {
		t.Fatalf("stored after the refused authorization: issuer %q refresh token %q", rec.Issuer, rec.RefreshToken)
	}
	// The same issuer again (a step-up consent): accepted.
	if err := again.Authorized(ctx, other, "https://a.example.com", nil); err != nil {
		t.Fatal(err)
	}
}

// A record bound to no issuer keeps nothing across a first authorization:
// no refresh token or key some other server issued.
func TestFirstBindingCarriesNothingOver(t *testing.T) {
	ctx := context.Background()
	m := newTestManager(t, NewMemoryBackend(), testOptions())
	spec := Spec{Resource: "https://mcp.example.com/mcp", Grant: GrantAuthorizationCode, Principal: "bob"}
	cred := m.Principals(spec, instantRequester{}).Credential("bob")
	if err := cred.rewrite(ctx, "planted", func(rec *Record) error {
		rec.RefreshToken, rec.DPoPKey = "rt-unbound", "key-unbound"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	res := &TokenResult{AccessToken: "at-a", TokenType: "Bearer", ExpiresIn: time.Hour} // no refresh token
	if err := cred.Authorized(ctx, res, "https://a.example.com", nil); err != nil {
		t.Fatal(err)
	}
	if rec := storedRecord(t, m, cred.ID()); rec.RefreshToken != "" || rec.DPoPKey != "" {
		t.Fatalf("carried over: refresh token %q key %q", rec.RefreshToken, rec.DPoPKey)
	}
}
