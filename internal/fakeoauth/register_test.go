package fakeoauth

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func register(t *testing.T, as *AuthServer, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(as.RegistrationURL(), "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestRegistrationThenPublicClientFlow(t *testing.T) {
	as := newAS(t, AuthServerOptions{Registration: true, Rotate: true})
	cb := newCallback(t)
	status, reg := register(t, as, map[string]any{"redirect_uris": []string{cb.uri()}, "client_name": "Gateway",
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none"})
	id, _ := reg["client_id"].(string)
	if status != http.StatusCreated || id == "" || reg["client_secret"] != nil || reg["token_endpoint_auth_method"] != "none" ||
		reg["client_id_issued_at"] == nil || as.Registrations() != 1 {
		t.Fatalf("register: %d %v", status, reg)
	}

	verifier, challenge := pkce()
	p := authzParams{clientID: id, redirectURI: cb.uri(), state: "r1", challenge: challenge, scope: "read"}
	if page, _, _ := loginForm(t, p.url(as)); !strings.Contains(page, "Gateway") {
		t.Fatalf("the page does not name the client:\n%s", page)
	}
	back := authorizeAs(t, as, cb, p, "bob")
	ans := postToken(t, as, public(id, codeForm(back.Get("code"), cb.uri(), verifier)))
	if ans.status != 200 || as.SubjectOf(ans.str("access_token")) != "bob" {
		t.Fatalf("public exchange: %d %s", ans.status, ans.raw)
	}
	if m := as.Requests()[0].AuthMethod; m != "none" {
		t.Fatalf("auth method %q", m)
	}
	ref := postToken(t, as, public(id, refreshForm(ans.str("refresh_token"))))
	if ref.status != 200 || as.SubjectOf(ref.str("access_token")) != "bob" {
		t.Fatalf("public refresh: %d %s", ref.status, ref.raw)
	}
	if cc := postToken(t, as, public(id, cc("", ""))); cc.str("error") != "unauthorized_client" {
		t.Fatalf("public client_credentials: %d %s", cc.status, cc.raw)
	}
	// Only the registered redirect URI.
	p.redirectURI = cb.uri() + "2"
	if resp, _ := fetch(t, noFollow, p.url(as)); resp.StatusCode != 400 {
		t.Fatalf("unregistered redirect: %d", resp.StatusCode)
	}
}

func TestRegistrationConfidentialAndErrors(t *testing.T) {
	as := newAS(t, AuthServerOptions{Registration: true, RegistrationSecretTTL: 300 * time.Millisecond})
	status, reg := register(t, as, map[string]any{"redirect_uris": []string{"http://127.0.0.1:1/cb"}, "grant_types": []string{"client_credentials"}})
	id, _ := reg["client_id"].(string)
	secret, _ := reg["client_secret"].(string)
	exp, _ := reg["client_secret_expires_at"].(float64)
	if status != 201 || secret == "" || reg["token_endpoint_auth_method"] != "client_secret_basic" || exp < float64(time.Now().Unix()) {
		t.Fatalf("register: %d %v", status, reg)
	}
	call := tokenCall{form: cc("", ""), basicID: id, basicSecret: secret}
	if ans := postToken(t, as, call); ans.status != 200 {
		t.Fatalf("fresh secret: %d %s", ans.status, ans.raw)
	}
	time.Sleep(350 * time.Millisecond)
	if ans := postToken(t, as, call); ans.str("error") != "invalid_client" {
		t.Fatalf("expired secret: %d %s", ans.status, ans.raw)
	}

	for body, want := range map[string]string{
		`{"client_name":"x"}`:                             "invalid_redirect_uri",
		`{"redirect_uris":["/relative"]}`:                 "invalid_redirect_uri",
		`{"redirect_uris":["https://a.example/cb#frag"]}`: "invalid_redirect_uri",
		`{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"magic"}`: "invalid_client_metadata",
		`{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}`:           "invalid_client_metadata",
		`not json`: "invalid_client_metadata",
	} {
		resp, err := http.Post(as.RegistrationURL(), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != 400 || m["error"] != want {
			t.Fatalf("%s: %d %v", body, resp.StatusCode, m)
		}
	}
	if as.Registrations() != 1 {
		t.Fatalf("registrations %d", as.Registrations())
	}
	off := newAS(t, AuthServerOptions{})
	if resp, err := http.Post(off.RegistrationURL(), "application/json", strings.NewReader(`{}`)); err != nil || resp.StatusCode != 404 {
		t.Fatalf("registration without the option: %v %v", resp, err)
	}
}

// cimdServer serves Client ID Metadata Documents; doc builds one from
// its own URL.
func cimdServer(t *testing.T, doc func(self string) map[string]any) *httptest.Server {
	t.Helper()
	var ts *httptest.Server
	ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc(ts.URL + r.URL.Path))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestCIMDFlow(t *testing.T) {
	as := newAS(t, AuthServerOptions{CIMD: true})
	cb := newCallback(t)
	docs := cimdServer(t, func(self string) map[string]any {
		id := self
		if strings.HasSuffix(self, "/liar.json") {
			id = "https://someone-else.example/client.json"
		}
		return map[string]any{"client_id": id, "client_name": "Doc Client", "redirect_uris": []string{cb.uri()}}
	})
	id := docs.URL + "/client.json"
	verifier, challenge := pkce()
	p := authzParams{clientID: id, redirectURI: cb.uri(), state: "c1", challenge: challenge, scope: "read"}
	back := authorizeAs(t, as, cb, p, "alice")
	if as.CIMDFetches() != 1 {
		t.Fatalf("fetches %d", as.CIMDFetches())
	}
	ans := postToken(t, as, public(id, codeForm(back.Get("code"), cb.uri(), verifier)))
	if ans.status != 200 || as.SubjectOf(ans.str("access_token")) != "alice" {
		t.Fatalf("exchange: %d %s", ans.status, ans.raw)
	}
	if as.CIMDFetches() != 1 {
		t.Fatalf("the token endpoint refetched a cached document: %d", as.CIMDFetches())
	}

	// A redirect URI the document does not list, a document claiming
	// another client_id: 400 pages naming the problem.
	for _, tc := range []struct{ p authzParams }{
		{authzParams{clientID: id, redirectURI: cb.uri() + "x", challenge: challenge}},
		{authzParams{clientID: docs.URL + "/liar.json", redirectURI: cb.uri(), challenge: challenge}},
	} {
		resp, body := fetch(t, noFollow, tc.p.url(as))
		if resp.StatusCode != 400 || !strings.Contains(body, "metadata document") {
			t.Fatalf("%s: %d %s", tc.p.clientID, resp.StatusCode, body)
		}
	}

	// Without the option a URL is just an unknown client.
	off := newAS(t, AuthServerOptions{})
	if resp, _ := fetch(t, noFollow, p.url(off)); resp.StatusCode != 400 || off.CIMDFetches() != 0 {
		t.Fatalf("CIMD off: %d", resp.StatusCode)
	}
}

// The token endpoint fetches a document it has not cached.
func TestCIMDFetchedAtTokenEndpoint(t *testing.T) {
	as := newAS(t, AuthServerOptions{CIMD: true})
	docs := cimdServer(t, func(self string) map[string]any {
		return map[string]any{"client_id": self, "redirect_uris": []string{"http://127.0.0.1:1/cb"}}
	})
	id := docs.URL + "/c.json"
	ans := postToken(t, as, public(id, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt_unknown"}}))
	if ans.str("error") != "invalid_grant" || as.CIMDFetches() != 1 {
		t.Fatalf("%d %s, fetches %d", ans.status, ans.raw, as.CIMDFetches())
	}
	big := cimdServer(t, func(self string) map[string]any {
		return map[string]any{"client_id": self, "redirect_uris": []string{"http://127.0.0.1:1/cb"}, "pad": strings.Repeat("x", 70<<10)}
	})
	resp, err := http.Get(as.AuthorizeURL() + "?" + url.Values{"client_id": {big.URL + "/c.json"}, "redirect_uri": {"http://127.0.0.1:1/cb"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "64 KiB") {
		t.Fatalf("oversized document: %d %s", resp.StatusCode, body)
	}
}

func TestAddPublicClient(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	cb := newCallback(t)
	as.AddPublicClient("pub", cb.uri())
	verifier, challenge := pkce()
	back := authorizeAs(t, as, cb, authzParams{clientID: "pub", redirectURI: cb.uri(), challenge: challenge, scope: "read"}, "alice")
	if ans := postToken(t, as, public("pub", codeForm(back.Get("code"), cb.uri(), verifier))); ans.status != 200 {
		t.Fatalf("%d %s", ans.status, ans.raw)
	}
	// A public client has no secret to present.
	form := codeForm("x", cb.uri(), verifier)
	form.Set("client_secret", "")
	if ans := postToken(t, as, public("pub", form)); ans.str("error") != "invalid_client" {
		t.Fatalf("public client with a secret: %d %s", ans.status, ans.raw)
	}
}
