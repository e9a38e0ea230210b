package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 19, finding 7: the replay budget (64 MiB for the process) is
// reserved from bytes received, never from a slow client's declared
// length. 70 connections declare 1 MiB bodies and send 10 bytes each;
// they used to reserve the whole budget, so a legitimate POST whose token
// the upstream then rejected was not replayable and its 401 reached the
// client.
func TestReplayBudgetCountsBytesReceived(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("first request: %d %s", status, body)
	}
	host := strings.TrimPrefix(c.URL(""), "http://")
	var open []net.Conn
	defer func() {
		for _, cn := range open {
			cn.Close()
		}
	}()
	for i := 0; i < 70; i++ {
		cn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, cn)
		fmt.Fprintf(cn, "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n0123456789", host, 1<<20)
	}
	// The slow requests reach the handler: wait until the upstream's
	// request count cannot tell us more, then give Caddy a moment to read
	// every first chunk (the handler blocks on each body).
	time.Sleep(2 * time.Second)

	e.as.InvalidateAccessTokens() // the next POST's token is rejected
	resp, err := testClient.PostForm(c.URL("/echo"), url.Values{"n": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST after a rejection, beside 70 slow uploads: %d, want 200 (replayed)", resp.StatusCode)
	}
}

// Issue 19, finding 7: a client's `Connection: Authorization` names the
// injected header as hop-by-hop, which the proxy would strip; it is
// ignored, so the token still reaches the upstream and no refresh is
// forced.
func TestConnectionHeaderCannotStripTheToken(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	for i := 0; i < 5; i++ {
		status, body, _ := get(t, c.URL("/echo"), "Connection", "Authorization, DPoP, keep-alive")
		if status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
	}
	if n := e.as.TokenRequests(""); n != 1 {
		t.Fatalf("token requests = %d, want 1 (no forced refreshes)", n)
	}
	if _, unauthorized, _ := e.up.Counts(); unauthorized != 0 {
		t.Fatalf("the upstream answered %d requests without a token", unauthorized)
	}
}
