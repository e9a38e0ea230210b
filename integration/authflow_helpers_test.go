package integration

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// users are the basic_auth accounts of the per-user tests; the password is
// the name backwards, which is good enough for loopback.
var users = []string{"alice", "bob"}

func password(user string) string {
	b := []byte(user + "-pw")
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// basicAuthBlock is a Caddyfile basic_auth block for users; paths the
// authorization server fetches without credentials (the client metadata
// document) stay open.
func basicAuthBlock(t *testing.T, open ...string) string {
	t.Helper()
	var b strings.Builder
	if len(open) > 0 {
		fmt.Fprintf(&b, "\t@private not path %s\n\tbasic_auth @private {\n", strings.Join(open, " "))
	} else {
		b.WriteString("\tbasic_auth {\n")
	}
	for _, u := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(password(u)), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\t\t%s %s\n", u, hash)
	}
	b.WriteString("\t}\n")
	return b.String()
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       testClient.Timeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// step sends one request as user ("" for none) and returns the response
// with its body read.
func step(t *testing.T, method, u, user string, form url.Values, hdr ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, password(user))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
var formAction = regexp.MustCompile(`<form method="post" action="([^"]*)">`)

// consent plays the user at the authorization server: it opens the
// authorization URL, reads the login form and continues as who. It
// returns the redirect back to the gateway (the callback URL).
func consent(t *testing.T, authURL, who string) string {
	t.Helper()
	resp, page := step(t, http.MethodGet, authURL, "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorization page: %d %s", resp.StatusCode, page)
	}
	action := formAction.FindStringSubmatch(page)
	if action == nil {
		t.Fatalf("no form on the authorization page:\n%s", page)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	form.Set("user", who)
	resp, body := step(t, http.MethodPost, html.UnescapeString(action[1]), "", form)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("decision: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// connect runs the whole flow for user through the gateway's start URL:
// start (as user), consent (as user at the authorization server), and the
// callback (as user). It returns the callback's response.
func connect(t *testing.T, startURL, user string) (*http.Response, string) {
	t.Helper()
	resp, body := step(t, http.MethodGet, startURL, user, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start as %s: %d %s", user, resp.StatusCode, body)
	}
	callback := consent(t, resp.Header.Get("Location"), user)
	return step(t, http.MethodGet, callback, user, nil)
}

// rpcAnswer is a JSON-RPC answer carrying an MCP URL elicitation error.
type rpcAnswer struct {
	status int
	ID     int `json:"id"`
	Error  struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Elicitations []struct{ Mode, ElicitationID, URL, Message string }
		} `json:"data"`
	} `json:"error"`
}

// postJSONRPC sends a JSON-RPC request as user at MCP revision
// 2025-11-25 and returns the decoded answer and the raw body.
func postJSONRPC(t *testing.T, u, user, rpc string) (rpcAnswer, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(rpc))
	req.SetBasicAuth(user, password(user))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	status, raw, _ := do(t, req)
	var a rpcAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		a.ID = -1
	}
	a.status = status
	return a, raw
}

// isURLElicitation: HTTP 200, JSON-RPC -32042 for request id, the URL in
// the message and in exactly one url-mode elicitation.
func (a rpcAnswer) isURLElicitation(id int, url string) bool {
	e := a.Error
	return a.status == http.StatusOK && a.ID == id && e.Code == -32042 && strings.Contains(e.Message, url) &&
		len(e.Data.Elicitations) == 1 && e.Data.Elicitations[0].Mode == "url" && e.Data.Elicitations[0].URL == url
}
