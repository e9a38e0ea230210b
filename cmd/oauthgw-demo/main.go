// Command oauthgw-demo runs a demo authorization server and an MCP-style
// upstream on loopback, so `make -f xcaddy.mk run` can show the gateway
// injecting and refreshing tokens without any outside service.
//
// The upstream accepts only bearer tokens from the demo authorization
// server; they live 30 seconds, so refreshes ahead of expiry show up in
// Caddy's log within a minute.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// The demo client's credentials. They exist only in this demo.
const (
	demoClientID     = "demo-gateway"
	demoClientSecret = "demo-secret-not-for-production"
)

func main() {
	asAddr := flag.String("as", "127.0.0.1:9401", "authorization server address")
	upAddr := flag.String("upstream", "127.0.0.1:9402", "upstream (protected resource) address")
	ttl := flag.Duration("ttl", 30*time.Second, "access token lifetime")
	flag.Parse()

	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{Addr: *asAddr, AccessTTL: *ttl, Rotate: true, RevokeFamilyOnReuse: true})
	if err != nil {
		log.Fatalf("starting authorization server: %v", err)
	}
	defer as.Close()
	as.AddClient(demoClientID, demoClientSecret)

	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{Addr: *upAddr, AuthServer: as, SSETimeout: 3 * time.Second})
	if err != nil {
		log.Fatalf("starting upstream: %v", err)
	}
	defer up.Close()

	fmt.Printf(`oauthgw-demo: a demo authorization server and protected upstream
  authorization server  %s   (token endpoint %s)
  upstream              %s   (resource %s; /echo, /mcp, /sse)
  demo client           %s / %s (demo-only values)
Access tokens live %s. Calling the upstream directly fails:
  curl -i %s/echo
Through the gateway it works:
  curl -s http://127.0.0.1:9400/echo
`, as.Issuer(), as.TokenURL(), up.URL(), up.Resource(), demoClientID, demoClientSecret, *ttl, up.URL())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			req, u401, _ := up.Counts()
			log.Printf("oauthgw-demo: upstream requests %d (401s %d), token requests %d", req, u401, as.TokenRequests(""))
		}
	}
}
