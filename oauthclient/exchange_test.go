package oauthclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

func TestSubjectTokenTypeURN(t *testing.T) {
	for in, want := range map[string]string{
		"access_token":            TokenTypeAccessToken,
		"id_token":                TokenTypeIDToken,
		"jwt":                     TokenTypeJWT,
		"refresh_token":           TokenTypeRefreshToken,
		"urn:example:custom-type": "urn:example:custom-type",
		TokenTypeIDJAG:            TokenTypeIDJAG,
	} {
		if got, err := SubjectTokenTypeURN(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "ID_TOKEN", "saml2", "urn:", "https://example/type"} {
		_, err := SubjectTokenTypeURN(in)
		if err == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		for _, name := range []string{"access_token", "id_token", "jwt", "refresh_token", "urn:"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("%q: error %q does not name %s", in, err, name)
			}
		}
	}
}

// exchangeServer is a token endpoint that records the forms it receives
// and answers with answer (status, JSON body).
type exchangeServer struct {
	mu     sync.Mutex
	forms  []url.Values
	basic  []string
	status int
	answer func(url.Values) map[string]any
}

func (s *exchangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, _, _ := r.BasicAuth()
	s.mu.Lock()
	s.forms = append(s.forms, r.PostForm)
	s.basic = append(s.basic, id)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	_ = json.NewEncoder(w).Encode(s.answer(r.PostForm))
}

func TestTokenExchangeRequest(t *testing.T) {
	const idjag = "eyJhbGciOiJFUzI1NiIsInR5cCI6Im9hdXRoLWlkLWphZytqd3QifQ.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	srv := &exchangeServer{status: http.StatusOK, answer: func(url.Values) map[string]any {
		return map[string]any{"access_token": idjag, "issued_token_type": TokenTypeIDJAG, "token_type": "N_A", "expires_in": 300}
	}}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	c := &Client{}
	tok, err := c.Token(context.Background(), Credentials{ClientID: "gw", ClientSecret: "gw-secret"}, Request{
		TokenEndpoint:      ts.URL,
		Grant:              GrantTokenExchange,
		SubjectToken:       "the-id-token",
		SubjectTokenType:   TokenTypeIDToken,
		RequestedTokenType: TokenTypeIDJAG,
		Audience:           "https://as.example",
		Resource:           "https://mcp.example/mcp",
		Scopes:             []string{"read", "write"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != idjag || tok.IssuedTokenType != TokenTypeIDJAG || tok.TokenType != "N_A" || tok.ExpiresIn != 300 {
		t.Fatalf("token response %+v", tok)
	}
	want := url.Values{
		"grant_type":           {GrantTokenExchange},
		"subject_token":        {"the-id-token"},
		"subject_token_type":   {TokenTypeIDToken},
		"requested_token_type": {TokenTypeIDJAG},
		"audience":             {"https://as.example"},
		"resource":             {"https://mcp.example/mcp"},
		"scope":                {"read write"},
	}
	if got := srv.forms[0]; got.Encode() != want.Encode() || srv.basic[0] != "gw" {
		t.Fatalf("form %v (basic %q), want %v", got, srv.basic[0], want)
	}

	// Optional parameters left empty are not sent at all.
	_, err = c.Token(context.Background(), Credentials{ClientID: "gw", ClientSecret: "gw-secret", AuthMethod: AuthPost}, Request{
		TokenEndpoint: ts.URL, Grant: GrantTokenExchange, SubjectToken: "opaque-subject", SubjectTokenType: TokenTypeAccessToken,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"requested_token_type", "audience", "resource", "scope", "assertion"} {
		if srv.forms[1].Has(p) {
			t.Errorf("%s sent though empty", p)
		}
	}
	if srv.forms[1].Get("client_id") != "gw" || srv.forms[1].Get("subject_token") != "opaque-subject" {
		t.Fatalf("form %v", srv.forms[1])
	}
}

// A server that echoes the subject token in its error must not get it
// into the error the gateway logs.
func TestTokenExchangeScrubsSubjectToken(t *testing.T) {
	const subject = "sekrit-subject-token-value"
	srv := &exchangeServer{status: http.StatusBadRequest, answer: func(f url.Values) map[string]any {
		return map[string]any{"error": "invalid_grant", "error_description": "bad subject_token " + f.Get("subject_token"),
			"error_uri": "https://as.example/err?t=" + url.QueryEscape(f.Get("subject_token")), "detail": map[string]any{"token": f.Get("subject_token")}}
	}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	_, err := (&Client{}).Token(context.Background(), Credentials{ClientID: "gw", ClientSecret: "gw-secret"}, Request{
		TokenEndpoint: ts.URL, Grant: GrantTokenExchange, SubjectToken: subject, SubjectTokenType: TokenTypeJWT,
	})
	var oe *Error
	if !errors.As(err, &oe) || oe.Err.Code != "invalid_grant" {
		t.Fatalf("error %v", err)
	}
	dump, _ := json.Marshal(oe.Err)
	if strings.Contains(err.Error(), subject) || strings.Contains(string(dump), subject) {
		t.Fatalf("subject token leaked: %s / %s", err, dump)
	}
}

func signedJWT(t testing.TB, claims any, alg jose.SignatureAlgorithm, key any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSubjectOf(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	es := signedJWT(t, jwt.Claims{Issuer: "https://idp.example", Subject: "alice", Expiry: jwt.NewNumericDate(exp)}, jose.ES256, key)
	hs := signedJWT(t, jwt.Claims{Subject: "bob"}, jose.HS256, []byte("0123456789abcdef0123456789abcdef"))
	big := signedJWT(t, map[string]any{"sub": "carol", "pad": strings.Repeat("x", 17<<10)}, jose.ES256, key)

	sub, got, ok := SubjectOf(es)
	if !ok || sub != "alice" || !got.Equal(exp) {
		t.Fatalf("ES256: %q %v %v", sub, got, ok)
	}
	// The signature is not checked: a tampered one still yields the subject.
	if sub, _, ok := SubjectOf(es[:strings.LastIndexByte(es, '.')] + ".AAAA"); !ok || sub != "alice" {
		t.Fatalf("tampered signature: %q %v", sub, ok)
	}
	if sub, got, ok := SubjectOf(hs); !ok || sub != "bob" || !got.IsZero() {
		t.Fatalf("HS256 without exp: %q %v %v", sub, got, ok)
	}
	for name, tok := range map[string]string{
		"opaque":        "at_abcdef0123456789",
		"empty":         "",
		"over 16 KiB":   big,
		"JWE":           "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
		"alg none":      "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
		"not JSON":      "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln",
		"sub not text":  "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOjV9.c2ln",
		"three dots":    "a.b.c",
		"JSON JWS form": `{"payload":"e30","signatures":[]}`,
	} {
		if sub, got, ok := SubjectOf(tok); ok || sub != "" || !got.IsZero() {
			t.Errorf("%s: %q %v %v", name, sub, got, ok)
		}
	}
}

// The whole enterprise-managed authorization flow (PROTOCOL.md §11)
// through this client: ID token -> ID-JAG at the IdP -> access token at
// the resource's authorization server, for the user of the ID token.
func TestIDJAGFlowAgainstFakes(t *testing.T) {
	idp, err := fakeoauth.StartIdP(fakeoauth.IdPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	idp.AddClient("gateway", "idp-secret")
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.AddClient("gateway", "as-secret")
	as.TrustIDJAG(idp.Issuer(), idp.JWKSURL())
	const resource = "https://mcp.example/mcp"

	c := &Client{}
	ctx := context.Background()
	for _, user := range []string{"alice", "bob"} {
		idToken := idp.IDToken(user, time.Hour)
		if sub, _, ok := SubjectOf(idToken); !ok || sub != user {
			t.Fatalf("SubjectOf(ID token) = %q %v", sub, ok)
		}
		jag, err := c.Token(ctx, Credentials{ClientID: "gateway", ClientSecret: "idp-secret"}, Request{
			TokenEndpoint: idp.TokenURL(), Grant: GrantTokenExchange,
			SubjectToken: idToken, SubjectTokenType: TokenTypeIDToken, RequestedTokenType: TokenTypeIDJAG,
			Audience: as.Issuer(), Resource: resource,
		})
		if err != nil {
			t.Fatalf("%s at the IdP: %v", user, err)
		}
		if jag.IssuedTokenType != TokenTypeIDJAG || jag.TokenType != "N_A" {
			t.Fatalf("%s: IdP answer %+v", user, jag)
		}
		at, err := c.Token(ctx, Credentials{ClientID: "gateway", ClientSecret: "as-secret", AuthMethod: AuthPost}, Request{
			TokenEndpoint: as.TokenURL(), Grant: GrantJWTBearer, Assertion: jag.AccessToken, Resource: resource, Scopes: []string{"read"},
		})
		if err != nil {
			t.Fatalf("%s at the AS: %v", user, err)
		}
		if got := as.SubjectOf(at.AccessToken); got != user || at.RefreshToken != "" {
			t.Fatalf("%s: subject %q, refresh token %v", user, got, at.RefreshToken != "")
		}
		// The ID-JAG is single-use; the refusal names no token.
		_, err = c.Token(ctx, Credentials{ClientID: "gateway", ClientSecret: "as-secret"}, Request{
			TokenEndpoint: as.TokenURL(), Grant: GrantJWTBearer, Assertion: jag.AccessToken, Resource: resource,
		})
		var oe *Error
		if !errors.As(err, &oe) || oe.Err.Code != "invalid_grant" || strings.Contains(err.Error(), jag.AccessToken) {
			t.Fatalf("%s: replay: %v", user, err)
		}
	}
}
