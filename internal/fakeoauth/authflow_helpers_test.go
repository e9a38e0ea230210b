package fakeoauth

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// callback is a client's redirect URI: it records every query it gets.
type callback struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []url.Values
}

func newCallback(t *testing.T) *callback {
	t.Helper()
	cb := &callback{}
	cb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.mu.Lock()
		cb.got = append(cb.got, r.URL.Query())
		cb.mu.Unlock()
		_, _ = io.WriteString(w, "callback ok")
	}))
	t.Cleanup(cb.srv.Close)
	return cb
}

func (cb *callback) uri() string { return cb.srv.URL + "/cb" }

func (cb *callback) last(t *testing.T) url.Values {
	t.Helper()
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if len(cb.got) == 0 {
		t.Fatal("the callback was never reached")
	}
	return cb.got[len(cb.got)-1]
}

// pkce returns an RFC 7636 verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = randomString() + randomString() // 48 characters
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

type authzParams struct {
	clientID, redirectURI, state, challenge, method, scope, resource string
	extra                                                            url.Values
}

func (p authzParams) url(as *AuthServer) string {
	q := url.Values{"response_type": {"code"}, "client_id": {p.clientID}, "redirect_uri": {p.redirectURI}}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", p.state)
	set("code_challenge", p.challenge)
	set("scope", p.scope)
	set("resource", p.resource)
	if p.challenge != "" && p.method == "" {
		p.method = "S256"
	}
	set("code_challenge_method", p.method)
	for k, v := range p.extra {
		q[k] = v
	}
	return as.AuthorizeURL() + "?" + q.Encode()
}

// noFollow does not follow redirects, to look at them.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func fetch(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// loginForm fetches the login page and returns its form's action and
// hidden fields, as a browser would submit them.
func loginForm(t *testing.T, authorizeURL string) (page, action string, fields url.Values) {
	t.Helper()
	resp, body := fetch(t, noFollow, authorizeURL)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("login page: %d %s", resp.StatusCode, body)
	}
	m := actionRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form in %s", body)
	}
	fields = url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(body, -1) {
		fields.Add(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	return body, html.UnescapeString(m[1]), fields
}

// decide submits the login form with one button (user=alice, deny=1),
// following the redirect to the callback.
func decide(t *testing.T, action string, fields url.Values, button, value string) *http.Response {
	t.Helper()
	form := url.Values{}
	for k, v := range fields {
		form[k] = v
	}
	form.Set(button, value)
	resp, err := http.PostForm(action, form)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// authorizeAs runs the browser part of the flow and returns what the
// callback received.
func authorizeAs(t *testing.T, as *AuthServer, cb *callback, p authzParams, user string) url.Values {
	t.Helper()
	_, action, fields := loginForm(t, p.url(as))
	if resp := decide(t, action, fields, "user", user); resp.StatusCode != http.StatusOK {
		t.Fatalf("decide: %d", resp.StatusCode)
	}
	return cb.last(t)
}

func codeForm(code, redirectURI, verifier string) url.Values {
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	return v
}

// public is a token call from a public client: client_id only.
func public(clientID string, form url.Values) tokenCall {
	form.Set("client_id", clientID)
	return tokenCall{form: form}
}
