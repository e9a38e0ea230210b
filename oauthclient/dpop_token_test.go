package oauthclient

// Token requests with DPoP: against a test server verifying with go-jose,
// and against the fake servers' own verification.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// dpopAS is a token endpoint that verifies DPoP proofs with go-jose and
// answers use_dpop_nonce until the proof carries its nonce.
type dpopAS struct {
	t         *testing.T
	mu        sync.Mutex
	nonce     string // required nonce; "" requires none
	giveNonce bool   // answer use_dpop_nonce when the nonce is wrong
	url       string // the htu proofs must carry
	endpoint  string // the token endpoint, with a query htu drops
	proofs    []proofClaims
	jkts      []string
	requests  int
	echo      bool // echo the proof in error_description
}

func (s *dpopAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	w.Header().Set("Content-Type", "application/json")
	proof := r.Header.Get("DPoP")
	if len(r.Header.Values("DPoP")) != 1 {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"error":"invalid_dpop_proof"}`))
		return
	}
	c, jkt := verifyProof(s.t, proof)
	s.proofs, s.jkts = append(s.proofs, c), append(s.jkts, jkt)
	if c.HTM != "POST" || c.HTU != s.url || time.Since(time.Unix(c.IAT, 0)) > time.Minute || c.ATH != "" {
		s.t.Errorf("proof claims %+v (want htu %s)", c, s.url)
	}
	if s.echo {
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_dpop_proof", "error_description": "bad proof " + proof})
		return
	}
	if c.Nonce != s.nonce {
		if s.giveNonce {
			w.Header().Set("DPoP-Nonce", s.nonce)
		}
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"error":"use_dpop_nonce"}`))
		return
	}
	w.Header().Set("DPoP-Nonce", "next-"+s.nonce)
	_, _ = w.Write([]byte(`{"access_token":"at","token_type":"DPoP","expires_in":60}`))
}

func newDPoPAS(t *testing.T, nonce string, giveNonce bool) *dpopAS {
	s := &dpopAS{t: t, nonce: nonce, giveNonce: giveNonce}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.url = ts.URL + "/token"
	s.endpoint = s.url + "?tenant=1"
	return s
}

func TestTokenDPoPNonceRetry(t *testing.T) {
	as := newDPoPAS(t, "srv-nonce", true)
	k, _ := NewDPoPKey()
	c := &Client{DPoPNonces: &DPoPNonces{}}
	creds := Credentials{ClientID: "c", ClientSecret: "s"}
	endpoint := as.endpoint
	tok, err := c.Token(context.Background(), creds, Request{TokenEndpoint: endpoint, Grant: "refresh_token", RefreshToken: "rt", DPoP: k})
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" || as.requests != 2 {
		t.Fatalf("token type %q after %d requests", tok.TokenType, as.requests)
	}
	if as.proofs[0].Nonce != "" || as.proofs[1].Nonce != "srv-nonce" || as.proofs[0].JTI == as.proofs[1].JTI {
		t.Fatalf("proofs %+v", as.proofs)
	}
	if as.jkts[0] != k.Thumbprint() || as.jkts[1] != k.Thumbprint() {
		t.Fatal("proof key is not the credential's")
	}
	// The nonce on the 200 is adopted; the next request sends it at once.
	origin := OriginOf(endpoint)
	if got := c.DPoPNonces.Get(origin); got != "next-srv-nonce" {
		t.Fatalf("remembered %q", got)
	}
	as.nonce = "next-srv-nonce"
	if _, err := c.Token(context.Background(), creds, Request{TokenEndpoint: endpoint, Grant: "client_credentials", DPoP: k}); err != nil || as.requests != 3 {
		t.Fatalf("%v after %d requests", err, as.requests)
	}
}

func TestTokenDPoPRetriesOnlyOnce(t *testing.T) {
	// A server whose nonce changes before every request keeps answering
	// use_dpop_nonce: the client retries once, then reports the error.
	as := newDPoPAS(t, "", true)
	swap := &nonceSwapper{as: as}
	ts := httptest.NewServer(swap)
	t.Cleanup(ts.Close)
	as.url = ts.URL
	k, _ := NewDPoPKey()
	c := &Client{} // no shared nonce table: the retry works all the same
	_, err := c.Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: ts.URL, Grant: "client_credentials", DPoP: k})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.VendorCode != "use_dpop_nonce" || as.requests != 2 {
		t.Fatalf("%v after %d requests", err, as.requests)
	}
	if as.proofs[1].Nonce != "n1" {
		t.Fatalf("retry carried %q", as.proofs[1].Nonce)
	}
}

// nonceSwapper changes the required nonce before every request, as a
// server with a very short nonce lifetime would.
type nonceSwapper struct {
	as *dpopAS
	n  int
}

func (s *nonceSwapper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.as.mu.Lock()
	s.n++
	s.as.nonce = fmt.Sprintf("n%d", s.n)
	s.as.mu.Unlock()
	s.as.ServeHTTP(w, r)
}

func TestTokenDPoPNoRetryWithoutNonce(t *testing.T) {
	as := newDPoPAS(t, "secret-nonce", false)
	k, _ := NewDPoPKey()
	c := &Client{DPoPNonces: &DPoPNonces{}}
	_, err := c.Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: as.endpoint, Grant: "client_credentials", DPoP: k})
	if err == nil || as.requests != 1 {
		t.Fatalf("%v after %d requests", err, as.requests)
	}
}

func TestTokenDPoPProofScrubbed(t *testing.T) {
	as := newDPoPAS(t, "", false)
	as.echo = true
	k, _ := NewDPoPKey()
	_, err := (&Client{}).Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: as.endpoint, Grant: "client_credentials", DPoP: k})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.VendorCode != "invalid_dpop_proof" {
		t.Fatalf("%v", err)
	}
	if strings.Contains(err.Error(), "eyJ") || !strings.Contains(oe.Err.Description, "REDACTED") {
		t.Fatalf("proof in error: %v", err)
	}
}

func TestTokenWithoutDPoPSendsNoProof(t *testing.T) {
	var got []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Values("DPoP")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer"}`))
	}))
	defer ts.Close()
	if _, err := (&Client{}).Token(context.Background(), Credentials{ClientID: "c", ClientSecret: "s"}, Request{TokenEndpoint: ts.URL, Grant: "client_credentials"}); err != nil || len(got) != 0 {
		t.Fatalf("%v %v", err, got)
	}
}

// TestDPoPAgainstFakeServers runs the client's proofs past the fake
// servers' own verification (a separate go-jose code path), with either
// algorithm.
func TestDPoPAgainstFakeServers(t *testing.T) {
	for _, alg := range []string{DPoPES256, DPoPEdDSA} {
		t.Run(alg, func(t *testing.T) { testDPoPAgainstFakeServers(t, alg) })
	}
}

func testDPoPAgainstFakeServers(t *testing.T, alg string) {
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{DPoPNonce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.AddClient("c1", "s1")
	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{AuthServer: as, DPoPNonce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	k, err := NewDPoPKeyFor(alg)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{DPoPNonces: &DPoPNonces{}}
	token := func() string {
		t.Helper()
		tok, err := c.Token(context.Background(), Credentials{ClientID: "c1", ClientSecret: "s1"},
			Request{TokenEndpoint: as.TokenURL(), Grant: "client_credentials", Resource: up.Resource(), DPoP: k})
		if err != nil {
			t.Fatal(err)
		}
		if tok.TokenType != "DPoP" || as.BoundKey(tok.AccessToken) != k.Thumbprint() {
			t.Fatalf("token type %q bound to %q", tok.TokenType, as.BoundKey(tok.AccessToken))
		}
		return tok.AccessToken
	}
	at := token()
	if n := as.TokenRequests(""); n != 2 {
		t.Fatalf("%d token requests, want 2 (nonce round trip)", n)
	}
	token() // the nonce adopted from the 200 is sent at once
	if n := as.TokenRequests(""); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
	as.RotateDPoPNonce()
	token()
	if n := as.TokenRequests(""); n != 5 {
		t.Fatalf("%d token requests, want 5", n)
	}
	if v, f := as.DPoPStats(); v != 3 || len(f) != 0 {
		t.Fatalf("AS stats %d %v", v, f)
	}

	// At the resource: ath, htu without the query, and the nonce dance
	// through UseDPoPNonce.
	var nonces DPoPNonces
	target := up.URL() + "/echo?x=1"
	get := func() *http.Response {
		proof, err := k.Proof(http.MethodGet, target, at, nonces.Get(OriginOf(target)))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "DPoP "+at)
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	resp := get()
	n, ok := UseDPoPNonce(resp.StatusCode, resp.Header, nil)
	if !ok {
		t.Fatalf("first request: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	nonces.Set(OriginOf(target), n)
	if resp := get(); resp.StatusCode != 200 {
		t.Fatalf("with nonce: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if v, distinct, f := up.DPoPStats(); v != 1 || distinct != 2 || len(f) != 0 {
		t.Fatalf("upstream stats %d %d %v", v, distinct, f)
	}
}
