// Command oauthgw-demo runs a demo authorization server and an MCP-style
// upstream on loopback, so `make -f xcaddy.mk run` can show the gateway
// injecting and refreshing tokens without any outside service.
//
// The upstream accepts only bearer tokens from the demo authorization
// server. They live 30 seconds by default, so refreshes ahead of expiry
// show up within a minute, in Caddy's log and in this command's log of
// token requests. Every 45 seconds (-invalidate) the authorization server
// invalidates all access tokens it issued, as a key rotation would, and
// the command sends one request through the gateway: the upstream answers
// it with 401, and Caddy's debug log shows the gateway obtaining a new
// token and replaying the request.
//
// Before starting anything the command checks that every address it will
// listen on, and the gateway's (and -free) addresses, are free; if one is
// taken it names it and exits with status 3. With -ready-file it creates
// that file once both servers listen, so a script can wait for it before
// starting Caddy.
//
// Usage:
//
//	oauthgw-demo [-as 127.0.0.1:9401] [-upstream 127.0.0.1:9402] [-ttl 30s] [-gateway http://127.0.0.1:9400]
//	             [-free 127.0.0.1:9403] [-invalidate 45s] [-ready-file path] [-hint text]
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// The demo client's credentials, also written in demo/Caddyfile. They
// exist only in this demo; printing them is the point.
const (
	demoClientID     = "demo-gateway"
	demoClientSecret = "demo-secret-not-for-production"
)

func main() {
	asAddr := flag.String("as", "127.0.0.1:9401", "authorization server listen address")
	upAddr := flag.String("upstream", "127.0.0.1:9402", "upstream (protected resource) listen address")
	ttl := flag.Duration("ttl", 30*time.Second, "access token lifetime")
	gateway := flag.String("gateway", "http://127.0.0.1:9400", "where the gateway in front of the upstream listens: checked to be free, used in the printed examples and for the request after each invalidation")
	printSeed := flag.Bool("refresh-seed", false, "also print a demo refresh token, to try `grant refresh_token`")
	free := flag.String("free", "", "comma-separated further addresses that must be free before starting (e.g. Caddy's admin address)")
	invalidate := flag.Duration("invalidate", 45*time.Second, "invalidate all access tokens this often and send one request through the gateway, to show a 401 and replay (0 disables)")
	readyFile := flag.String("ready-file", "", "create this file once the servers listen")
	hint := flag.String("hint", "choose other addresses with -as, -upstream and -gateway", "advice added to the message when an address is in use")
	flag.Parse()
	log.SetPrefix("oauthgw-demo: ")
	log.SetFlags(log.Ltime)

	gatewayURL, err := url.Parse(*gateway)
	if err != nil || gatewayURL.Host == "" {
		log.Fatalf("-gateway %q: want a URL like http://127.0.0.1:9400", *gateway)
	}
	gatewayAddr := gatewayURL.Host
	if gatewayURL.Port() == "" {
		gatewayAddr = net.JoinHostPort(gatewayURL.Hostname(), "80")
	}
	need := []namedAddr{{*asAddr, "the demo authorization server"}, {*upAddr, "the demo upstream"}, {gatewayAddr, "the gateway (Caddy)"}}
	for _, a := range strings.Split(*free, ",") {
		if a = strings.TrimSpace(a); a != "" {
			need = append(need, namedAddr{a, "Caddy"})
		}
	}
	if err := checkFree(need); err != nil {
		fmt.Fprintf(os.Stderr, "oauthgw-demo: %v; %s\n", err, *hint)
		os.Exit(3)
	}

	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{
		Addr:                *asAddr,
		AccessTTL:           *ttl,
		Rotate:              true,
		RevokeFamilyOnReuse: true,
		OnTokenRequest:      logTokenRequest,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "oauthgw-demo: starting the authorization server on %s: %v; %s\n", *asAddr, err, *hint)
		os.Exit(3)
	}
	defer as.Close()
	as.AddClient(demoClientID, demoClientSecret)

	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{
		Addr:           *upAddr,
		AuthServer:     as,
		RequiredScopes: map[string][]string{"/echo/admin": {"admin"}},
		SSETimeout:     3 * time.Second,
	})
	if err != nil {
		as.Close()
		fmt.Fprintf(os.Stderr, "oauthgw-demo: starting the upstream on %s: %v; %s\n", *upAddr, err, *hint)
		os.Exit(3)
	}
	defer up.Close()

	fmt.Printf(`oauthgw-demo: a local authorization server and a protected MCP-style upstream,
for trying the oauth_gateway Caddy module. Nothing here is for production.

  authorization server  %s
    token endpoint      %s  (client_credentials, refresh_token with rotation)
    metadata            %s
  upstream              %s
    resource            %s
    endpoints           /echo (shows the Authorization it saw), /mcp (JSON-RPC), /sse,
                        /echo/admin (needs scope admin: the gateway steps up)
  demo client           client_id %s, client_secret %s (demo-only values)
  access tokens live    %s%s

Calling the upstream directly fails with a 401 challenge:
  curl -i %s/echo
Through the gateway it works, and the token is the gateway's:
  curl -s %s/echo
`, as.Issuer(), as.TokenURL(), as.OAuthMetadataURL(), up.URL(), up.Resource(),
		demoClientID, demoClientSecret, *ttl, invalidateNote(*invalidate), up.URL(), strings.TrimSuffix(*gateway, "/"))
	if *printSeed {
		fmt.Printf("\nDemo refresh token for grant refresh_token (demo-only, rotates on use):\n  %s\n",
			as.IssueRefreshToken(demoClientID, []string{"read"}))
	}
	fmt.Println("\nToken requests are logged below (no tokens or secrets). Ctrl-C stops.")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte("ready\n"), 0o644); err != nil {
			log.Fatalf("writing -ready-file: %v", err)
		}
		defer os.Remove(*readyFile)
	}
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	var invalidateC <-chan time.Time
	if *invalidate > 0 {
		t := time.NewTicker(*invalidate)
		defer t.Stop()
		invalidateC = t.C
	}
	for {
		select {
		case sig := <-stop:
			log.Printf("%s: stopping", sig)
			return
		case <-invalidateC:
			as.InvalidateAccessTokens()
			log.Printf("invalidated every access token issued so far; the gateway's next request gets a 401 and is replayed with a new token")
			go poke(strings.TrimSuffix(*gateway, "/") + "/echo")
		case <-tick.C:
			req, unauthorized, forbidden := up.Counts()
			log.Printf("upstream: %d requests (%d answered 401, %d answered 403); token requests: %d; refresh token reuse detected: %d",
				req, unauthorized, forbidden, as.TokenRequests(""), as.ReuseDetections())
		}
	}
}

// logTokenRequest shows each token request as the authorization server
// saw it. TokenRequestLog holds no secret by construction.
func logTokenRequest(r fakeoauth.TokenRequestLog) {
	outcome := "issued a token"
	if r.Error != "" {
		outcome = "refused: " + r.Error
	} else if r.Status != 200 {
		outcome = fmt.Sprintf("answered %d", r.Status)
	}
	log.Printf("token request: grant=%s client=%s auth=%s scope=%q resource=%q -> %s",
		r.Grant, r.ClientID, r.AuthMethod, r.Scope, r.Resource, outcome)
}

func invalidateNote(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", and all are invalidated every %s (a request through the\n                        gateway then shows a 401 and a replay in Caddy's log)", d)
}

type namedAddr struct{ addr, what string }

// checkFree reports the first address that cannot be listened on, so the
// demo never starts next to someone else's server on the same ports.
func checkFree(addrs []namedAddr) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("port %s is in use (wanted for %s)", a.addr, a.what)
			}
			return fmt.Errorf("cannot listen on %s (wanted for %s): %v", a.addr, a.what, err)
		}
		ln.Close()
	}
	return nil
}

// poke sends one request through the gateway after the tokens were
// invalidated, so the 401 and the replay show up without anyone calling.
func poke(u string) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		log.Printf("request through the gateway (%s): %v", u, err)
		return
	}
	resp.Body.Close()
	log.Printf("request through the gateway (%s): %s", u, resp.Status)
}
