package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
)

// Acceptance 5 (DCR): three instances on one Redis, plus a restart,
// register the gateway exactly once; a flow started on one instance
// completes on another, and every instance then serves the user.
func TestDynamicRegistrationOncePerFleet(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	e := newEnv(t, fakeoauth.AuthServerOptions{Registration: true, Rotate: true, RequireApplicationType: true}, fakeoauth.UpstreamOptions{})
	front := freePort(t) // the fleet's public address: node 0
	site := basicAuthBlock(t) + fmt.Sprintf(`	oauth_gateway {
		resource       %s
		grant          authorization_code
		redirect_uri   http://127.0.0.1:%d/mcp/.oauth/callback
		principal      {http.auth.user.id}
		discovery_allow_hosts 127.0.0.1
		insecure_allow_http
	}
	reverse_proxy %s`, e.up.Resource(), front, strings.TrimPrefix(e.up.URL(), "http://"))
	global := fmt.Sprintf("\toauth_gateway {\n\t\tstorage redis %s {\n\t\t\tkey_prefix dcr%s\n\t\t}\n\t\tencryption_key {env.TEST_KEY}\n\t}", r.URL(), randomHex(4))
	envs := []string{"TEST_KEY=AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="}
	var nodes []*caddyProc
	for i := 0; i < 3; i++ {
		opts := caddyOptions{Global: global, Env: envs}
		if i == 0 {
			opts.Port = front
		}
		nodes = append(nodes, startCaddy(t, site, opts))
	}

	// Every instance starts a flow at once: one registration.
	var wg sync.WaitGroup
	locations := make([]string, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := step(t, http.MethodGet, n.URL("/mcp/.oauth/start"), "alice", nil)
			if resp.StatusCode != http.StatusFound {
				t.Errorf("start on node %d: %d %s", i, resp.StatusCode, body)
			}
			locations[i] = resp.Header.Get("Location")
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if n := e.as.Registrations(); n != 1 {
		t.Fatalf("registrations = %d, want 1 for the fleet (application_type sent: %q)", n, e.as.ApplicationTypes())
	}
	// SEP-837: the loopback redirect URI makes the gateway a native client.
	if got := e.as.ApplicationTypes(); len(got) != 1 || got[0] != "native" {
		t.Fatalf("application_type %q, want native for a loopback redirect URI", got)
	}

	// Started on node 2, completed on node 0 (the redirect_uri's).
	callback := consent(t, locations[2], "alice")
	if !strings.HasPrefix(callback, nodes[0].URL("/")) {
		t.Fatalf("callback %s is not on node 0", callback)
	}
	if resp, body := step(t, http.MethodGet, callback, "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	for i, n := range nodes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, body := step(t, http.MethodGet, n.URL("/echo"), "alice", nil)
			if resp.StatusCode == http.StatusOK && decodeEcho(t, []byte(body)).Subject == "alice" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not serve alice: %d %s", i, resp.StatusCode, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// A restart reuses the stored registration.
	nodes[1].Restart()
	if resp, body := step(t, http.MethodGet, nodes[1].URL("/mcp/.oauth/start"), "bob", nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("start after restart: %d %s", resp.StatusCode, body)
	}
	if n := e.as.Registrations(); n != 1 {
		t.Fatalf("registrations after a restart = %d, want 1", n)
	}
	if e.as.ReuseDetections() != 0 {
		t.Fatal("refresh token reused")
	}
	assertNoSecrets(t, nodes[0].Logs()+nodes[1].Logs()+nodes[2].Logs(), e.secrets()...)
}
