// Command oauthgw-demo runs a demo authorization server and an MCP-style
// upstream on loopback, so `make -f xcaddy.mk run` can show the gateway
// injecting and refreshing tokens without any outside service.
//
// The upstream accepts only bearer tokens from the demo authorization
// server. They live 30 seconds by default, so refreshes ahead of expiry
// show up within a minute, in Caddy's log and in this command's log of
// token requests.
//
// Usage:
//
//	oauthgw-demo [-as 127.0.0.1:9401] [-upstream 127.0.0.1:9402] [-ttl 30s] [-gateway http://127.0.0.1:9400]
package main

import (
	"flag"
	"fmt"
	"log"
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
	gateway := flag.String("gateway", "http://127.0.0.1:9400", "where the gateway in front of the upstream listens (for the printed examples)")
	printSeed := flag.Bool("refresh-seed", false, "also print a demo refresh token, to try `grant refresh_token`")
	flag.Parse()
	log.SetPrefix("oauthgw-demo: ")
	log.SetFlags(log.Ltime)

	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{
		Addr:                *asAddr,
		AccessTTL:           *ttl,
		Rotate:              true,
		RevokeFamilyOnReuse: true,
		OnTokenRequest:      logTokenRequest,
	})
	if err != nil {
		log.Fatalf("starting authorization server: %v", err)
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
		log.Fatalf("starting upstream: %v", err)
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
  access tokens live    %s

Calling the upstream directly fails with a 401 challenge:
  curl -i %s/echo
Through the gateway it works, and the token is the gateway's:
  curl -s %s/echo
`, as.Issuer(), as.TokenURL(), as.OAuthMetadataURL(), up.URL(), up.Resource(),
		demoClientID, demoClientSecret, *ttl, up.URL(), strings.TrimSuffix(*gateway, "/"))
	if *printSeed {
		fmt.Printf("\nDemo refresh token for grant refresh_token (demo-only, rotates on use):\n  %s\n",
			as.IssueRefreshToken(demoClientID, []string{"read"}))
	}
	fmt.Println("\nToken requests are logged below (no tokens or secrets). Ctrl-C stops.")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case sig := <-stop:
			log.Printf("%s: stopping", sig)
			return
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
