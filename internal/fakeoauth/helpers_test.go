package fakeoauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// newAS serves an AuthServer through httptest, the way a unit test in
// another package would.
func newAS(t *testing.T, opts AuthServerOptions) *AuthServer {
	t.Helper()
	as := NewAuthServer(opts)
	ts := httptest.NewServer(as)
	t.Cleanup(ts.Close)
	as.SetOrigin(ts.URL)
	as.AddClient("c1", "s1")
	return as
}

type tokenCall struct {
	form        url.Values
	basicID     string // form-encoded before base64 unless rawBasic
	basicSecret string
	rawBasic    bool
	accept      string
}

type tokenAnswer struct {
	status int
	header http.Header
	raw    string
	json   map[string]any
}

func (a tokenAnswer) str(k string) string { s, _ := a.json[k].(string); return s }

func postToken(t *testing.T, as *AuthServer, c tokenCall) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, as.TokenURL(), strings.NewReader(c.form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.accept != "-" {
		if c.accept == "" {
			c.accept = "application/json"
		}
		req.Header.Set("Accept", c.accept)
	}
	if c.basicID != "" {
		id, secret := url.QueryEscape(c.basicID), url.QueryEscape(c.basicSecret)
		if c.rawBasic {
			id, secret = c.basicID, c.basicSecret
		}
		req.SetBasicAuth(id, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ans := tokenAnswer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &ans.json)
	return ans
}

func cc(scope, resource string) url.Values {
	v := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		v.Set("scope", scope)
	}
	if resource != "" {
		v.Set("resource", resource)
	}
	return v
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func basic(form url.Values) tokenCall { return tokenCall{form: form, basicID: "c1", basicSecret: "s1"} }
