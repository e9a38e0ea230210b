package fakeoauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// post sends a form to endpoint with Basic client authentication (none
// when id is "") and decodes the JSON answer.
func post(t *testing.T, endpoint string, form url.Values, id, secret string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ans := tokenAnswer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &ans.json)
	return ans
}

func startIdP(t *testing.T, opts IdPOptions) *IdP {
	t.Helper()
	idp, err := StartIdP(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	idp.AddClient("gateway", "idp-secret")
	return idp
}

func exchangeForm(idToken, audience, resource string) url.Values {
	f := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {idToken},
		"subject_token_type": {TokenTypeIDToken}, "requested_token_type": {TokenTypeIDJAG}, "audience": {audience}}
	if resource != "" {
		f.Set("resource", resource)
	}
	return f
}

func bearerForm(assertion, resource string) url.Values {
	f := url.Values{"grant_type": {GrantJWTBearer}, "assertion": {assertion}}
	if resource != "" {
		f.Set("resource", resource)
	}
	return f
}

// idjagFixture is an IdP and an AuthServer that trusts it, with the
// client "gateway" registered at both.
func idjagFixture(t *testing.T) (*IdP, *AuthServer) {
	t.Helper()
	idp := startIdP(t, IdPOptions{})
	as := newAS(t, AuthServerOptions{})
	as.AddClient("gateway", "as-secret")
	as.TrustIDJAG(idp.Issuer(), idp.JWKSURL())
	return idp, as
}

const mcpResource = "https://mcp.example/mcp"

// getIDJAG exchanges an ID token of user at the IdP for an ID-JAG for as.
func getIDJAG(t *testing.T, idp *IdP, as *AuthServer, user string) string {
	t.Helper()
	ans := post(t, idp.TokenURL(), exchangeForm(idp.IDToken(user, time.Hour), as.Issuer(), mcpResource), "gateway", "idp-secret")
	if ans.status != http.StatusOK {
		t.Fatalf("exchange for %s: %d %s", user, ans.status, ans.raw)
	}
	return ans.str("access_token")
}

func TestIDJAGTwoUsers(t *testing.T) {
	idp, as := idjagFixture(t)
	for _, user := range []string{"alice", "bob"} {
		form := exchangeForm(idp.IDToken(user, time.Hour), as.Issuer(), mcpResource)
		form.Set("scope", "read")
		ans := post(t, idp.TokenURL(), form, "gateway", "idp-secret")
		if ans.status != http.StatusOK || ans.str("issued_token_type") != TokenTypeIDJAG || ans.str("token_type") != "N_A" || ans.json["expires_in"] != float64(300) {
			t.Fatalf("%s: IdP answer %d %s", user, ans.status, ans.raw)
		}
		grant := ans.str("access_token")
		tok, err := jwt.ParseSigned(grant, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil || tok.Headers[0].ExtraHeaders[jose.HeaderType] != IDJAGType {
			t.Fatalf("%s: ID-JAG header %v %v", user, err, tok)
		}
		var c issuerClaims
		if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
			t.Fatal(err)
		}
		if c.Issuer != idp.Issuer() || c.Subject != user || !slices.Equal(c.Audience, jwt.Audience{as.Issuer()}) || c.ClientID != "gateway" ||
			c.Resource != mcpResource || c.Scope != "read" || c.ID == "" || c.Expiry.Time().Sub(c.IssuedAt.Time()) != 5*time.Minute {
			t.Fatalf("%s: ID-JAG claims %+v", user, c)
		}

		at := post(t, as.TokenURL(), bearerForm(grant, mcpResource), "gateway", "as-secret")
		if at.status != http.StatusOK || at.str("refresh_token") != "" || at.str("scope") != "read" {
			t.Fatalf("%s: AS answer %d %s", user, at.status, at.raw)
		}
		if got := as.SubjectOf(at.str("access_token")); got != user {
			t.Fatalf("access token subject %q, want %s", got, user)
		}
		if _, ok := as.ValidateFor(at.str("access_token"), mcpResource); !ok {
			t.Fatalf("%s: access token does not validate for the resource", user)
		}
	}
	want := []IdPExchange{{"gateway", "alice", as.Issuer(), mcpResource}, {"gateway", "bob", as.Issuer(), mcpResource}}
	if got := idp.Exchanges(); !slices.Equal(got, want) {
		t.Fatalf("IdP log %+v", got)
	}
	if log := as.BearerAssertions(); len(log) != 2 || !log[0].Accepted || log[1].Subject != "bob" {
		t.Fatalf("AS log %+v", log)
	}
	if n := as.IDJAGKeyFetches(idp.Issuer()); n < 1 {
		t.Fatalf("JWKS fetched %d times", n)
	}
}

func TestIdPRefuses(t *testing.T) {
	idp, as := idjagFixture(t)
	foreign := startIdP(t, IdPOptions{})
	idp.AddClient("second", "second-secret")
	aud := as.Issuer()
	short := idp.IDToken("alice", 20*time.Second)
	jag := getIDJAG(t, idp, as, "alice")
	for _, c := range []struct {
		name, id, secret string
		form             url.Values
		status           int
		code             string
	}{
		{"expired ID token", "gateway", "idp-secret", exchangeForm(idp.IDToken("alice", -time.Minute), aud, ""), 400, "invalid_grant"},
		{"another IdP's ID token", "gateway", "idp-secret", exchangeForm(foreign.IDToken("alice", time.Hour), aud, ""), 400, "invalid_grant"},
		{"ID token of another client", "second", "second-secret", exchangeForm(idp.IDToken("alice", time.Hour), aud, ""), 400, "invalid_grant"},
		{"an ID-JAG as subject token", "gateway", "idp-secret", exchangeForm(jag, aud, ""), 400, "invalid_grant"},
		{"garbage subject token", "gateway", "idp-secret", exchangeForm("not-a-jwt", aud, ""), 400, "invalid_grant"},
		{"wrong secret", "gateway", "nope", exchangeForm(short, aud, ""), 401, "invalid_client"},
		{"no client authentication", "", "", exchangeForm(short, aud, ""), 401, "invalid_client"},
		{"audience missing", "gateway", "idp-secret", exchangeForm(short, "", ""), 400, "invalid_request"},
		{"subject token missing", "gateway", "idp-secret", exchangeForm("", aud, ""), 400, "invalid_request"},
		{"wrong requested type", "gateway", "idp-secret", func() url.Values {
			f := exchangeForm(short, aud, "")
			f.Set("requested_token_type", TokenTypeAccessToken)
			return f
		}(), 400, "invalid_request"},
		{"wrong subject type", "gateway", "idp-secret", func() url.Values {
			f := exchangeForm(short, aud, "")
			f.Set("subject_token_type", TokenTypeJWT)
			return f
		}(), 400, "invalid_request"},
		{"other grant", "gateway", "idp-secret", url.Values{"grant_type": {"client_credentials"}}, 400, "unsupported_grant_type"},
	} {
		ans := post(t, idp.TokenURL(), c.form, c.id, c.secret)
		if ans.status != c.status || ans.str("error") != c.code {
			t.Errorf("%s: %d %s", c.name, ans.status, ans.raw)
		}
		if strings.Contains(ans.raw, c.form.Get("subject_token")+"\"") && c.form.Get("subject_token") != "" {
			t.Errorf("%s: the answer echoes the subject token", c.name)
		}
	}
	if n := len(idp.Exchanges()); n != 1 {
		t.Fatalf("%d exchanges logged, want the fixture's one", n)
	}

	// An ID-JAG never outlives the ID token it came from.
	ans := post(t, idp.TokenURL(), exchangeForm(short, aud, ""), "gateway", "idp-secret")
	if ans.status != http.StatusOK || ans.json["expires_in"].(float64) > 20 {
		t.Fatalf("short ID token: %d %s", ans.status, ans.raw)
	}
}

func TestIDJAGRefusedAtAS(t *testing.T) {
	idp, as := idjagFixture(t)
	untrusted := startIdP(t, IdPOptions{})
	as.AddClient("other", "other-secret")

	exchange := func(p *IdP, audience, resource string) string {
		ans := post(t, p.TokenURL(), exchangeForm(p.IDToken("alice", time.Hour), audience, resource), "gateway", "idp-secret")
		if ans.status != http.StatusOK {
			t.Fatalf("exchange: %d %s", ans.status, ans.raw)
		}
		return ans.str("access_token")
	}
	now := time.Now()
	signed := func(typ string, exp time.Time, jti string) string {
		s, err := idp.sign(typ, jwt.Claims{Issuer: idp.Issuer(), Subject: "alice", Audience: jwt.Audience{as.Issuer()},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp), ID: jti}, map[string]any{"client_id": "gateway"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	replayed := exchange(idp, as.Issuer(), mcpResource)
	if ans := post(t, as.TokenURL(), bearerForm(replayed, mcpResource), "gateway", "as-secret"); ans.status != http.StatusOK {
		t.Fatalf("first use: %d %s", ans.status, ans.raw)
	}
	for _, c := range []struct {
		name, assertion, resource, client string
	}{
		{"replayed", replayed, mcpResource, "gateway"},
		{"wrong audience", exchange(idp, "https://other-as.example", mcpResource), mcpResource, "gateway"},
		{"token endpoint as audience", exchange(idp, as.TokenURL(), ""), "", "gateway"},
		{"untrusted IdP", exchange(untrusted, as.Issuer(), ""), "", "gateway"},
		{"another resource", exchange(idp, as.Issuer(), mcpResource), "https://other.example/mcp", "gateway"},
		{"another client", exchange(idp, as.Issuer(), mcpResource), mcpResource, "other"},
		{"expired", signed(IDJAGType, now.Add(-time.Second), "j-expired"), "", "gateway"},
		{"without jti", signed(IDJAGType, now.Add(time.Minute), ""), "", "gateway"},
		{"not typed as an ID-JAG", signed("JWT", now.Add(time.Minute), "j-untyped"), "", "gateway"},
		{"an ID token", idp.IDToken("alice", time.Hour), "", "gateway"},
	} {
		secret := map[string]string{"gateway": "as-secret", "other": "other-secret"}[c.client]
		ans := post(t, as.TokenURL(), bearerForm(c.assertion, c.resource), c.client, secret)
		if ans.status != http.StatusBadRequest || ans.str("error") != "invalid_grant" {
			t.Errorf("%s: %d %s", c.name, ans.status, ans.raw)
		}
	}
	// A correctly signed one with a new jti still works after all that.
	if ans := post(t, as.TokenURL(), bearerForm(signed("application/OAuth-ID-JAG+JWT", now.Add(time.Minute), "j-ok"), ""), "gateway", "as-secret"); ans.status != http.StatusOK {
		t.Fatalf("valid ID-JAG: %d %s", ans.status, ans.raw)
	}
}

func TestTokenExchangeAtAS(t *testing.T) {
	idp := startIdP(t, IdPOptions{})
	as := newAS(t, AuthServerOptions{TrustedIDJAGIssuers: map[string]string{idp.Issuer(): idp.JWKSURL()}, TokenExchangeAudiences: []string{"gateway"}})
	strict := newAS(t, AuthServerOptions{TrustedIDJAGIssuers: map[string]string{idp.Issuer(): idp.JWKSURL()}})
	as.AddSubjectToken("opaque-carol-token", "carol")
	foreign := startIdP(t, IdPOptions{})

	form := func(token, typ string) url.Values {
		return url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {token}, "subject_token_type": {typ}, "scope": {"read"}}
	}
	for _, c := range []struct {
		name, token, typ, want string
	}{
		{"ID token", idp.IDToken("alice", time.Hour), TokenTypeIDToken, "alice"},
		{"registered opaque token", "opaque-carol-token", TokenTypeAccessToken, "carol"},
	} {
		ans := post(t, as.TokenURL(), form(c.token, c.typ), "c1", "s1")
		if ans.status != http.StatusOK || ans.str("issued_token_type") != TokenTypeAccessToken || ans.str("token_type") != "Bearer" || ans.str("refresh_token") != "" {
			t.Fatalf("%s: %d %s", c.name, ans.status, ans.raw)
		}
		if got := as.SubjectOf(ans.str("access_token")); got != c.want {
			t.Fatalf("%s: subject %q", c.name, got)
		}
	}
	for _, c := range []struct {
		name   string
		as     *AuthServer
		form   url.Values
		status int
		code   string
	}{
		{"unknown opaque token", as, form("opaque-unknown", TokenTypeAccessToken), 400, "invalid_grant"},
		{"expired ID token", as, form(idp.IDToken("alice", -time.Minute), TokenTypeIDToken), 400, "invalid_grant"},
		{"untrusted issuer", as, form(foreign.IDToken("alice", time.Hour), TokenTypeIDToken), 400, "invalid_grant"},
		{"aud not accepted", strict, form(idp.IDToken("alice", time.Hour), TokenTypeIDToken), 400, "invalid_grant"},
		{"no subject token type", as, form("opaque-carol-token", ""), 400, "invalid_request"},
		{"unsupported type", as, form("opaque-carol-token", "urn:example:saml"), 400, "invalid_request"},
		{"no subject token", as, form("", TokenTypeJWT), 400, "invalid_request"},
	} {
		ans := post(t, c.as.TokenURL(), c.form, "c1", "s1")
		if ans.status != c.status || ans.str("error") != c.code {
			t.Errorf("%s: %d %s", c.name, ans.status, ans.raw)
		}
	}
	if got := as.SubjectExchanges(); !slices.Equal(got, []string{"alice", "carol"}) {
		t.Fatalf("exchanges %v", got)
	}
}
