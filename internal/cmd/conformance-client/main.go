// Command conformance-client is the client command the MCP conformance
// suite (@modelcontextprotocol/conformance) runs for each client scenario,
// with the caddy-oauth-gateway in the middle:
//
//	suite's mock MCP server + mock authorization server
//	        ^
//	        |  OAuth: everything the suite judges is done by the gateway
//	Caddy (bin/caddy) with oauth_gateway in front of the scenario's server
//	        ^
//	        |  plain MCP, no OAuth (the Go SDK's client)
//	this program
//
// The suite runs `conformance-client <server-url>` with
// MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_PROTOCOL_VERSION (0.2.x) and,
// for some scenarios, MCP_CONFORMANCE_CONTEXT (client credentials, keys,
// tokens) in the environment. This program writes a Caddyfile whose
// oauth_gateway names the server URL as its resource (the authorization
// server is discovered), starts Caddy on loopback ports, and drives the
// scenario's MCP traffic through Caddy. When the gateway answers that a
// user's consent is needed (JSON-RPC -32042 URL elicitation, -32001, or a
// 401 authorization_required), it plays the user: it follows the start URL
// through the suite's authorization server, which approves at once, back to
// the gateway's callback, and retries the call (at most maxConsents times).
//
// Secrets from the context reach Caddy only as environment variables named
// by {env.*} placeholders; keys and assertions go into files in a private
// temporary directory. Environment knobs:
//
//	OAUTHGW_CADDY                  Caddy binary (default bin/caddy next to the module root, else "caddy")
//	OAUTHGW_CONFORMANCE_ARTIFACTS  directory that receives Caddyfile, caddy.log and client.log
//	OAUTHGW_CONFORMANCE_TIMEOUT    bound of the whole run (default 25s; the suite kills at 30s)
//	OAUTHGW_CONFORMANCE_PLAIN      "discovery": for scenarios without OAuth, let the gateway
//	                               discover (and find nothing) instead of using staticas.go
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

const defaultTimeout = 25 * time.Second

func main() {
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("conformance-client: ")
	if len(os.Args) != 2 {
		log.Fatalf("usage: MCP_CONFORMANCE_SCENARIO=<scenario> %s <server-url>", filepath.Base(os.Args[0]))
	}
	os.Exit(run(os.Args[1]))
}

func run(serverURL string) int {
	sc, err := loadScenario(serverURL)
	if err != nil {
		log.Print(err)
		return 2
	}
	timeout := defaultTimeout
	if v := os.Getenv("OAUTHGW_CONFORMANCE_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			timeout = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	artifacts := os.Getenv("OAUTHGW_CONFORMANCE_ARTIFACTS")
	if artifacts != "" {
		if err := os.MkdirAll(artifacts, 0o755); err != nil {
			log.Printf("artifacts directory: %v", err)
			artifacts = ""
		}
	}
	if artifacts != "" {
		if f, err := os.OpenFile(filepath.Join(artifacts, "client.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644); err == nil {
			defer f.Close()
			log.SetOutput(io.MultiWriter(os.Stderr, f))
		}
	}
	log.Printf("scenario %s, protocol %s, server %s", sc.name, sc.protocolOrDefault(), sc.serverURL)

	work, err := os.MkdirTemp("", "oauthgw-conformance-")
	if err != nil {
		log.Print(err)
		return 2
	}
	defer os.RemoveAll(work)

	var as *staticAS
	if needsOwnAS(sc) {
		if as, err = startStaticAS(); err != nil {
			log.Printf("starting the static authorization server: %v", err)
			return 2
		}
		defer as.close()
	}
	prof, err := profileFor(sc, work, as)
	if err != nil {
		log.Printf("configuring the gateway: %v", err)
		return 2
	}
	caddy, err := startCaddy(ctx, sc, prof, work, artifacts)
	if err != nil {
		log.Printf("starting caddy: %v", err)
		return 2
	}
	defer caddy.stop()
	log.Printf("caddy is up: %s (admin %s)", caddy.siteURL(sc), caddy.adminURL)

	err = runScenario(ctx, sc, prof, caddy)
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			log.Printf("scenario %s: gave up after %s", sc.name, timeout)
		}
		log.Printf("scenario %s failed: %v", sc.name, err)
		return 1
	}
	log.Printf("scenario %s: client flow completed", sc.name)
	return 0
}

// fail is a formatted error.
func fail(format string, args ...any) error { return fmt.Errorf(format, args...) }
