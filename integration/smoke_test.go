package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// TestSmokePlainReverseProxy proves the harness and the fakes without the
// gateway: a token obtained from the fake authorization server over HTTP,
// set by a plain reverse_proxy's header_up, is accepted by the fake
// upstream; SSE streams event by event through Caddy; Restart works.
func TestSmokePlainReverseProxy(t *testing.T) {
	t.Parallel()
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{AuthServer: as, SSETimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	secret := "cs_" + randomHex(16)
	as.AddClient("smoke-client", secret)
	token := fetchToken(t, as, "smoke-client", secret, up.Resource())

	c := startCaddy(t, fmt.Sprintf(`	reverse_proxy %s {
		header_up Authorization "Bearer %s"
	}`, strings.TrimPrefix(up.URL(), "http://"), token), caddyOptions{})

	echo := func(step string) {
		t.Helper()
		status, body, _ := get(t, c.URL("/echo"), "Authorization", "Bearer client-supplied")
		if status != http.StatusOK {
			t.Fatalf("%s: /echo %d %s", step, status, body)
		}
		var r struct{ Authorization string }
		if err := json.Unmarshal(body, &r); err != nil || r.Authorization != "Bearer "+token {
			t.Fatalf("%s: upstream saw %q, want the header_up token", step, r.Authorization)
		}
	}
	echo("first")

	// Without a token the upstream answers a challenge through Caddy.
	resp, err := http.Get(up.URL() + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("direct call without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	assertFirstSSEEventBeforeRelease(t, c.URL("/sse"), up)

	c.Restart()
	echo("after restart")
	if n, unauthorized, _ := up.Counts(); n != 4 || unauthorized != 1 {
		t.Fatalf("upstream counts: %d requests, %d 401s; want 4 and 1", n, unauthorized)
	}
	assertNoSecrets(t, c.Logs(), secret, basicCredential("smoke-client", secret), token)
}

// assertFirstSSEEventBeforeRelease reads the first event from url while
// the upstream holds the stream open, then releases it and reads the rest.
func assertFirstSSEEventBeforeRelease(t *testing.T, url string, up *fakeoauth.Upstream) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("/sse: %d %q", resp.StatusCode, ct)
	}
	r := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		var ev strings.Builder
		for {
			line, err := r.ReadString('\n')
			ev.WriteString(line)
			if err != nil || line == "\n" {
				first <- ev.String()
				return
			}
		}
	}()
	select {
	case ev := <-first:
		if !strings.Contains(ev, `data: {"n":1}`) {
			t.Fatalf("first event %q", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event did not arrive while the upstream was still streaming")
	}
	if up.SSEWaiting() != 1 {
		t.Fatalf("upstream streams waiting: %d, want 1", up.SSEWaiting())
	}
	up.ReleaseSSE()
	rest, _ := io.ReadAll(r)
	if !strings.Contains(string(rest), `data: {"n":2}`) {
		t.Fatalf("rest of the stream %q", rest)
	}
}

// fetchToken runs a client_credentials grant against the fake
// authorization server, the way the gateway will.
func fetchToken(t *testing.T, as *fakeoauth.AuthServer, id, secret, resource string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}
	req, _ := http.NewRequest(http.MethodPost, as.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	status, body, _ := do(t, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); status != http.StatusOK || err != nil || tok.AccessToken == "" {
		t.Fatalf("token request: %d %s", status, body)
	}
	return tok.AccessToken
}
