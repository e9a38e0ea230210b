package fakeoauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCodeFlowConfidentialClient(t *testing.T) {
	as := newAS(t, AuthServerOptions{Rotate: true})
	cb := newCallback(t)
	as.AddRedirectURI("c1", cb.uri())
	up := newUpstream(t, as, UpstreamOptions{})
	verifier, challenge := pkce()
	p := authzParams{clientID: "c1", redirectURI: cb.uri(), state: "st-1", challenge: challenge,
		scope: "read write", resource: up.Resource(),
		extra: url.Values{"access_type": {"offline"}, "prompt": {"consent"}}}

	page, action, fields := loginForm(t, p.url(as))
	for _, want := range []string{
		"<title>Sign in to " + as.Issuer() + "</title>", ">c1<", "read write",
		`<button type="submit" name="user" value="alice" id="user-alice">Continue as alice</button>`,
		`<button type="submit" name="user" value="bob" id="user-bob">Continue as bob</button>`,
		`id="deny"`,
	} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page lacks %q:\n%s", want, page)
		}
	}
	if action != as.Issuer()+"/authorize/decide" || fields.Get("access_type") != "offline" || fields.Get("code_challenge") != challenge {
		t.Fatalf("form %s %v", action, fields)
	}
	if resp := decide(t, action, fields, "user", "alice"); resp.StatusCode != http.StatusOK {
		t.Fatalf("decide: %d", resp.StatusCode)
	}
	back := cb.last(t)
	if back.Get("state") != "st-1" || back.Get("iss") != as.Issuer() || back.Get("code") == "" || back.Has("error") {
		t.Fatalf("callback got %v", back)
	}

	ans := postToken(t, as, basic(codeForm(back.Get("code"), cb.uri(), verifier)))
	if ans.status != http.StatusOK || ans.str("refresh_token") == "" || ans.str("scope") != "read write" {
		t.Fatalf("exchange: %d %s", ans.status, ans.raw)
	}
	at := ans.str("access_token")
	if as.SubjectOf(at) != "alice" {
		t.Fatalf("SubjectOf = %q", as.SubjectOf(at))
	}
	echoSubject(t, up, at, "alice")

	// Refresh rotates and keeps the subject.
	ref := postToken(t, as, basic(refreshForm(ans.str("refresh_token"))))
	if ref.status != http.StatusOK || ref.str("refresh_token") == "" || ref.str("refresh_token") == ans.str("refresh_token") {
		t.Fatalf("refresh: %d %s", ref.status, ref.raw)
	}
	echoSubject(t, up, ref.str("access_token"), "alice")
	if again := postToken(t, as, basic(refreshForm(ans.str("refresh_token")))); again.str("error") != "invalid_grant" {
		t.Fatalf("spent refresh token: %s", again.raw)
	}

	logs := as.Authorizations()
	if len(logs) != 1 || logs[0].User != "alice" || logs[0].Denied || logs[0].ClientID != "c1" || logs[0].RedirectURI != cb.uri() ||
		logs[0].Scope != "read write" || logs[0].Resource != up.Resource() ||
		logs[0].Extra["access_type"] != "offline" || logs[0].Extra["prompt"] != "consent" || len(logs[0].Extra) != 2 {
		t.Fatalf("authorizations %+v", logs)
	}
	req := as.Requests()[0]
	if req.Grant != "authorization_code" || req.ClientID != "c1" || req.AuthMethod != methodBasic || req.Status != 200 {
		t.Fatalf("token log %+v", req)
	}
	if as.TokenRequests("authorization_code") != 1 {
		t.Fatal("authorization_code not counted")
	}
	// A client_credentials token has no subject.
	cct := postToken(t, as, basic(cc("read", up.Resource()))).str("access_token")
	echoSubject(t, up, cct, "")
}

func echoSubject(t *testing.T, up *Upstream, token, want string) {
	t.Helper()
	resp, body := call(t, http.MethodGet, up.URL()+"/echo", "Bearer "+token, nil)
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != 200 || e.Subject != want {
		t.Fatalf("echo %d %s, want subject %q", resp.StatusCode, body, want)
	}
	if want == "" && !strings.Contains(string(body), `"subject":""`) {
		t.Fatalf("echo lacks an empty subject: %s", body)
	}
}

// codeFor runs the browser part for c1 and returns a code and verifier.
func codeFor(t *testing.T, as *AuthServer, cb *callback, user string) (code, verifier string) {
	t.Helper()
	verifier, challenge := pkce()
	back := authorizeAs(t, as, cb, authzParams{clientID: "c1", redirectURI: cb.uri(), state: "s", challenge: challenge, scope: "read"}, user)
	return back.Get("code"), verifier
}

func TestCodeExchangeChecks(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	as.AddClient("c2", "s2")
	cb := newCallback(t)

	code, verifier := codeFor(t, as, cb, "bob")
	other, _ := pkce()
	for name, call := range map[string]tokenCall{
		"PKCE mismatch":    basic(codeForm(code, cb.uri(), other)),
		"no verifier":      basic(codeForm(code, cb.uri(), "")),
		"short verifier":   basic(codeForm(code, cb.uri(), "abc")),
		"wrong redirect":   basic(codeForm(code, cb.uri()+"x", verifier)),
		"another client":   {form: codeForm(code, cb.uri(), verifier), basicID: "c2", basicSecret: "s2"},
		"unknown code":     basic(codeForm("ac_nope", cb.uri(), verifier)),
		"a public request": public("c1", codeForm(code, cb.uri(), verifier)),
	} {
		ans := postToken(t, as, call)
		want := "invalid_grant"
		if name == "a public request" {
			want = "invalid_client" // c1 is confidential
		}
		if ans.status == http.StatusOK || ans.str("error") != want {
			t.Fatalf("%s: %d %s", name, ans.status, ans.raw)
		}
	}
	// The failures did not spend the code.
	if ans := postToken(t, as, basic(codeForm(code, cb.uri(), verifier))); ans.status != 200 {
		t.Fatalf("valid exchange: %d %s", ans.status, ans.raw)
	} else if as.SubjectOf(ans.str("access_token")) != "bob" {
		t.Fatal("subject is not bob")
	}

	// Expiry.
	short := newAS(t, AuthServerOptions{CodeTTL: 50 * time.Millisecond})
	code, verifier = codeFor(t, short, cb, "alice")
	time.Sleep(80 * time.Millisecond)
	if ans := postToken(t, short, basic(codeForm(code, cb.uri(), verifier))); ans.str("error") != "invalid_grant" {
		t.Fatalf("expired code: %d %s", ans.status, ans.raw)
	}
}

// RFC 6749 §4.1.2: a code used twice fails and revokes its tokens.
func TestCodeReuseRevokesTokens(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	cb := newCallback(t)
	code, verifier := codeFor(t, as, cb, "alice")
	first := postToken(t, as, basic(codeForm(code, cb.uri(), verifier)))
	if first.status != 200 {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	if _, ok := as.Validate(first.str("access_token")); !ok {
		t.Fatal("token invalid before reuse")
	}
	if again := postToken(t, as, basic(codeForm(code, cb.uri(), verifier))); again.status != 400 || again.str("error") != "invalid_grant" {
		t.Fatalf("reuse: %d %s", again.status, again.raw)
	}
	if _, ok := as.Validate(first.str("access_token")); ok {
		t.Fatal("the access token survived code reuse")
	}
	if ref := postToken(t, as, basic(refreshForm(first.str("refresh_token")))); ref.str("error") != "invalid_grant" {
		t.Fatalf("the refresh token survived code reuse: %s", ref.raw)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	cb := newCallback(t)
	as.AddRedirectURI("c1", cb.uri())
	_, challenge := pkce()
	good := authzParams{clientID: "c1", redirectURI: cb.uri(), state: "s1", challenge: challenge}

	// Untrusted client or redirect URI: a 400 page, never a redirect.
	for name, p := range map[string]authzParams{
		"unregistered redirect": {clientID: "c1", redirectURI: cb.uri() + "/other", challenge: challenge},
		"unknown client":        {clientID: "nobody", redirectURI: cb.uri(), challenge: challenge},
		"missing redirect":      {clientID: "c1", challenge: challenge},
	} {
		resp, body := fetch(t, noFollow, p.url(as))
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %v %s", name, resp.StatusCode, resp.Header, body)
		}
	}
	// Anything else goes back to the client with invalid_request.
	noPKCE, plain, badType := good, good, good
	noPKCE.challenge = ""
	plain.method = "plain"
	badType.extra = url.Values{"response_type": {"token"}}
	for name, p := range map[string]authzParams{"no challenge": noPKCE, "plain": plain, "response_type": badType} {
		resp, body := fetch(t, noFollow, p.url(as))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), cb.uri()+"?") {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
		if q := loc.Query(); q.Get("error") != "invalid_request" || q.Get("state") != "s1" || q.Get("iss") != as.Issuer() {
			t.Fatalf("%s: %v", name, q)
		}
	}
	// The page escapes what it shows.
	evil := good
	evil.state = `"><script>alert(1)</script>`
	evil.scope = "<b>read</b>"
	page, _, fields := loginForm(t, evil.url(as))
	if strings.Contains(page, "<script>") || strings.Contains(page, "<b>") || fields.Get("state") != evil.state {
		t.Fatalf("unescaped page:\n%s", page)
	}
}

func TestDenyAndIssParameter(t *testing.T) {
	_, challenge := pkce()
	for _, tc := range []struct {
		opts AuthServerOptions
		iss  func(*AuthServer) string
	}{
		{AuthServerOptions{}, func(as *AuthServer) string { return as.Issuer() }},
		{AuthServerOptions{WrongIss: "https://evil.example"}, func(*AuthServer) string { return "https://evil.example" }},
		{AuthServerOptions{OmitIss: true}, func(*AuthServer) string { return "" }},
	} {
		as := newAS(t, tc.opts)
		cb := newCallback(t)
		p := authzParams{clientID: "c1", redirectURI: cb.uri() + "?keep=1", state: "s2", challenge: challenge}
		_, action, fields := loginForm(t, p.url(as))
		decide(t, action, fields, "deny", "1")
		back := cb.last(t)
		if back.Get("error") != "access_denied" || back.Get("state") != "s2" || back.Get("keep") != "1" || back.Has("code") {
			t.Fatalf("deny: %v", back)
		}
		if back.Get("iss") != tc.iss(as) || back.Has("iss") != (tc.iss(as) != "") {
			t.Fatalf("%+v: iss %v", tc.opts, back)
		}
		if logs := as.Authorizations(); len(logs) != 1 || !logs[0].Denied || logs[0].User != "" {
			t.Fatalf("log %+v", logs)
		}
		if code := authorizeAs(t, as, cb, p, "alice"); code.Get("code") == "" || code.Get("iss") != tc.iss(as) {
			t.Fatalf("%+v: approval %v", tc.opts, code)
		}
	}
}

func TestMetadataAuthorizationFields(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	_, _, m := getJSON(t, as.OAuthMetadataURL())
	if m["authorization_endpoint"] != as.AuthorizeURL() || m["authorization_response_iss_parameter_supported"] != true ||
		!slices.Equal(strs(m["code_challenge_methods_supported"]), []string{"S256"}) ||
		!slices.Equal(strs(m["response_types_supported"]), []string{"code"}) ||
		!slices.Contains(strs(m["grant_types_supported"]), "authorization_code") ||
		!slices.Contains(strs(m["token_endpoint_auth_methods_supported"]), "none") {
		t.Fatalf("metadata %v", m)
	}
	if _, ok := m["registration_endpoint"]; ok {
		t.Fatal("registration advertised without the option")
	}
	if _, ok := m["client_id_metadata_document_supported"]; ok {
		t.Fatal("CIMD advertised without the option")
	}
	all := newAS(t, AuthServerOptions{NoS256: true, Registration: true, CIMD: true})
	_, _, m = getJSON(t, all.OIDCMetadataURL())
	if _, ok := m["code_challenge_methods_supported"]; ok {
		t.Fatal("NoS256 still advertises S256")
	}
	if m["registration_endpoint"] != all.RegistrationURL() || m["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata %v", m)
	}
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, s := range l {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

// NoS256 accepts plain and absent challenges.
func TestNoS256(t *testing.T) {
	as := newAS(t, AuthServerOptions{NoS256: true})
	cb := newCallback(t)
	verifier, _ := pkce()
	back := authorizeAs(t, as, cb, authzParams{clientID: "c1", redirectURI: cb.uri(), challenge: verifier, method: "plain"}, "alice")
	if ans := postToken(t, as, basic(codeForm(back.Get("code"), cb.uri(), verifier))); ans.status != 200 {
		t.Fatalf("plain: %d %s", ans.status, ans.raw)
	}
	back = authorizeAs(t, as, cb, authzParams{clientID: "c1", redirectURI: cb.uri()}, "bob")
	if ans := postToken(t, as, basic(codeForm(back.Get("code"), cb.uri(), ""))); ans.status != 200 {
		t.Fatalf("no PKCE: %d %s", ans.status, ans.raw)
	}
}
