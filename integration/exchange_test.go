package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// idjagEnv is a resource's authorization server that trusts an
// enterprise identity provider's ID-JAGs, the upstream, and the IdP.
type idjagEnv struct {
	*env
	idp       *fakeoauth.IdP
	idpSecret string
}

func newIDJAGEnv(t *testing.T) *idjagEnv {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	idp, err := fakeoauth.StartIdP(fakeoauth.IdPOptions{ClientID: "gateway-at-idp", ResourceClientID: e.clientID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	x := &idjagEnv{env: e, idp: idp, idpSecret: "idp_" + randomHex(16)}
	idp.AddClient("gateway-at-idp", x.idpSecret)
	e.as.TrustIDJAG(idp.Issuer(), idp.JWKSURL())
	return x
}

// site puts forward_auth in front, as the README shows: the identity
// provider's session service hands the gateway the user's ID token
// (copy_headers), so the token never comes from the client and Caddy's
// access log (which logs the client's request) never sees it.
func (x *idjagEnv) site(sessions string) string {
	return fmt.Sprintf(`	forward_auth %s {
		uri /session
		copy_headers X-Id-Token
	}
	oauth_gateway {
		resource           %s
		issuer             %s
		client_id          %s
		client_secret      {env.TEST_CLIENT_SECRET}
		grant              id_jag
		subject_token      {http.request.header.X-Id-Token}
		idp_token_endpoint %s
		idp_client_id      gateway-at-idp
		idp_client_secret  {env.TEST_IDP_SECRET}
		insecure_allow_http
	}
	reverse_proxy %s`, sessions, x.up.Resource(), x.as.Issuer(), x.clientID, x.idp.TokenURL(), strings.TrimPrefix(x.up.URL(), "http://"))
}

// startSessions is the identity provider's session check for
// forward_auth: a `session` cookie naming a user gets that user's ID
// token; "anonymous" is signed in without one; no cookie is refused.
func startSessions(t *testing.T, idTokens map[string]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if tok := idTokens[c.Value]; tok != "" {
			w.Header().Set("X-Id-Token", tok)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func getAs(t *testing.T, method, url, session string) (int, []byte, http.Header) {
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"n":1}`))
	req.AddCookie(&http.Cookie{Name: "session", Value: session})
	return do(t, req)
}

// Issue 10, acceptance 3: id_jag end to end with an IdP that signs
// ID-JAGs and two users with different ID tokens: each upstream request
// carries its own user's token; a request without an ID token gets 401.
func TestIDJAGGivesEachUserTheirOwnToken(t *testing.T) {
	t.Parallel()
	x := newIDJAGEnv(t)
	idTokens := map[string]string{"alice": x.idp.IDToken("alice", time.Hour), "bob": x.idp.IDToken("bob", time.Hour),
		"forger": forgeJWT(t, x.idp.Issuer(), "alice")}
	c := startCaddy(t, x.site(startSessions(t, idTokens)), caddyOptions{Env: append(x.secretEnv(), "TEST_IDP_SECRET="+x.idpSecret)})

	// 100 concurrent requests per user, GET and POST mixed.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wrong := map[string]int{}
	for _, user := range []string{"alice", "bob"} {
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				method := http.MethodGet
				if i%2 == 1 {
					method = http.MethodPost
				}
				status, body, _ := getAs(t, method, c.URL("/echo"), user)
				mu.Lock()
				defer mu.Unlock()
				if status != http.StatusOK {
					wrong[fmt.Sprintf("%s: status %d", user, status)]++
					return
				}
				echo := decodeEcho(t, body)
				if echo.Subject != user {
					wrong[fmt.Sprintf("%s got %s's token", user, echo.Subject)]++
				}
				if slices.Contains(echo.Headers, "X-Id-Token") {
					wrong["the user's ID token was forwarded upstream"]++
				}
			}()
		}
	}
	wg.Wait()
	if len(wrong) > 0 {
		t.Fatalf("requests not served with their own user's token: %v\n%s", wrong, tail(c.Logs(), 3000))
	}
	// One ID-JAG per user, addressed to the resource's authorization
	// server and the resource; each jwt-bearer grant for its own user.
	exchanges := x.idp.Exchanges()
	perUser := map[string]int{}
	for _, ex := range exchanges {
		perUser[ex.Subject]++
		if ex.Audience != x.as.Issuer() || ex.Resource != x.up.Resource() || ex.Client != "gateway-at-idp" {
			t.Errorf("ID-JAG exchange %+v: want audience %s, resource %s", ex, x.as.Issuer(), x.up.Resource())
		}
	}
	if perUser["alice"] != 1 || perUser["bob"] != 1 {
		t.Errorf("ID-JAG exchanges per user %v, want one each (200 requests)", perUser)
	}
	t.Logf("200 requests by 2 users: %d ID-JAG exchanges, %d jwt-bearer grants", len(exchanges), len(x.as.BearerAssertions()))

	// Signed in, but no ID token: a clear 401, nothing sent anywhere.
	before := len(x.idp.Exchanges())
	status, body, hdr := getAs(t, http.MethodGet, c.URL("/echo"), "anonymous")
	var answer struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Error != "invalid_token" {
		t.Errorf("without an ID token: body %s is not an OAuth error", body)
	}
	if status != http.StatusUnauthorized || !strings.Contains(string(body), "subject token") || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("without an ID token: %d %s %s", status, hdr.Get("Content-Type"), body)
	}
	// A forged token naming alice: refused by the IdP, never served with
	// alice's cached token.
	status, body, _ = getAs(t, http.MethodGet, c.URL("/echo"), "forger")
	if status != http.StatusUnauthorized {
		t.Fatalf("forged ID token for alice: %d %s", status, body)
	}
	if n := len(x.idp.Exchanges()); n != before {
		t.Fatalf("the IdP issued %d more ID-JAGs for refused requests", n-before)
	}
	assertNoSecrets(t, c.Logs(), x.secrets(x.idpSecret)...)
	// ID tokens reach no log line but Caddy's own debug line of
	// forward_auth's round trip, which shows the session service's
	// response headers (debug level only; not this module's to change).
	var kept []string
	for _, line := range strings.Split(c.Logs(), "\n") {
		if !strings.Contains(line, `"logger":"http.handlers.reverse_proxy"`) {
			kept = append(kept, line)
		}
	}
	assertNoSecrets(t, strings.Join(kept, "\n"), idTokens["alice"], idTokens["bob"], idTokens["forger"])

}

// grant token_exchange (RFC 8693) at the resource's own authorization
// server, with opaque subject tokens keyed by their hash: the client
// presents its own access token (Authorization, which Caddy's access log
// redacts) and the upstream gets one issued for it.
func TestTokenExchangePerSubjectToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	e.as.AddSubjectToken("opaque-token-of-carol", "carol")
	e.as.AddSubjectToken("opaque-token-of-dave", "dave")
	site := e.gatewaySite("grant token_exchange", "subject_token {http.request.header.Authorization}")
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	for range 3 {
		for token, user := range map[string]string{"opaque-token-of-carol": "carol", "opaque-token-of-dave": "dave"} {
			status, body, _ := get(t, c.URL("/echo"), "Authorization", "Bearer "+token)
			if status != http.StatusOK || decodeEcho(t, body).Subject != user {
				t.Fatalf("%s: %d %s", user, status, body)
			}
		}
	}
	if got := e.as.SubjectExchanges(); len(got) != 2 {
		t.Fatalf("exchanges %v, want one per subject token for 6 requests", got)
	}
	// An unknown token: 401 naming the cause; asked once, then
	// remembered (not sent again on every request).
	for range 3 {
		status, body, _ := get(t, c.URL("/echo"), "Authorization", "Bearer not-a-known-token")
		if status != http.StatusUnauthorized || !strings.Contains(string(body), "refused the request's subject token") {
			t.Fatalf("unknown subject token: %d %s", status, body)
		}
	}
	if n := e.as.TokenRequests("urn:ietf:params:oauth:grant-type:token-exchange"); n != 3 {
		t.Fatalf("%d token-exchange requests, want 3 (two subjects, one refused token asked once)", n)
	}
	assertNoSecrets(t, c.Logs(), e.secrets("opaque-token-of-carol", "opaque-token-of-dave")...)
}

// forgeJWT is an ID token naming subject at issuer, signed with a key
// the issuer never had.
func forgeJWT(t *testing.T, issuer, subject string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Subject: subject, Audience: jwt.Audience{"gateway-at-idp"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
