package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/internal/testports"
)

// The chaos suite: three Caddy instances sharing Redis, a fake
// authorization server with strict refresh-token rotation (family revoked
// on reuse) and 2-second access tokens, 50 refresh-token credentials
// under steady mixed load, and one fault at a time injected through
// toxiproxy (embedded in the test process as a real TCP proxy), Redis
// restarts, SIGKILLed instances or the fake server's failure modes.

const (
	chaosCredentials = 50
	chaosAccessTTL   = 2 * time.Second
	chaosInstances   = 3
	chaosWarmup      = 3 * time.Second  // load before the fault starts
	chaosTail        = 8 * time.Second  // load after the fault ends
	chaosRecovery    = 60 * time.Second // every credential serves again within this of the fault's end
)

// chaosDuration is how long each scenario's faults last: $CHAOS_DURATION,
// which `make -f xcaddy.mk chaos` sets (60s by default; CI runs it with
// 15s), else 15s. The fault-injection suite is not part of `make -f
// xcaddy.mk test`, which leaves the TestChaos* scenarios out by name
// (-skip; they measure three instances under steady load, about 5 minutes
// at 15s); CI runs `make chaos` after it (.ci/run). The scenarios run one
// at a time (no t.Parallel): each measures the fleet under load.
func chaosDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("CHAOS_DURATION")
	if v == "" {
		v = "15s"
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 5*time.Second {
		t.Fatalf("CHAOS_DURATION=%q: want a duration of at least 5s", v)
	}
	return d
}

// toxiServer is the toxiproxy server the chaos proxies belong to; only
// its proxy collection and (silent) logger are used, no API listener.
// Toxics log through zerolog's global logger at trace level, thousands
// of lines a run: that logger is silenced too.
var toxiServer = func() *toxiproxy.ApiServer {
	zerolog.SetGlobalLevel(zerolog.Disabled)
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
}()

// chaosProxy is one toxiproxy TCP proxy on a free loopback port.
type chaosProxy struct {
	t    *testing.T
	p    *toxiproxy.Proxy
	Addr string
}

// newChaosProxy starts a proxy to upstream (host:port); the test's
// cleanup stops it. Its port comes from freePort, not port 0: Disable
// lets the port go and Enable binds it again, and a kernel-chosen port
// could be handed to someone else (any outgoing connection) in between.
func newChaosProxy(t *testing.T, name, upstream string) *chaosProxy {
	t.Helper()
	var p *toxiproxy.Proxy
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		testports.Release(port)
		p = toxiproxy.NewProxy(toxiServer, name+"-"+randomHex(4), fmt.Sprintf("127.0.0.1:%d", port), upstream)
		err := p.Start()
		if err == nil {
			break
		}
		// Taken between the release and the bind: rare, try another.
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatalf("toxiproxy %s: %v", name, err)
		}
	}
	t.Cleanup(p.Stop)
	// Start rewrote Listen to the bound address; Disable/Enable reuse it.
	return &chaosProxy{t: t, p: p, Addr: p.Listen}
}

// Disable closes the listener and every connection through the proxy: a
// full partition (new connections are refused).
func (c *chaosProxy) Disable() { c.p.Stop() }

// Enable listens again on the same address.
func (c *chaosProxy) Enable() {
	c.t.Helper()
	for i := 0; ; i++ {
		err := c.p.Start()
		if err == nil || err == toxiproxy.ErrProxyAlreadyStarted {
			return
		}
		if i == 50 {
			c.t.Fatalf("toxiproxy: listening again on %s: %v", c.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AddToxic adds a toxic (latency, bandwidth, reset_peer, timeout, ...)
// on stream "upstream" (towards the server) or "downstream" (towards the
// client) with JSON attributes, e.g. `{"latency":5000}`.
func (c *chaosProxy) AddToxic(name, typ, stream, attrs string) {
	c.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := c.p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		c.t.Fatalf("toxic %s: %v", name, err)
	}
}

// RemoveToxic removes a toxic added with AddToxic.
func (c *chaosProxy) RemoveToxic(name string) {
	c.t.Helper()
	if err := c.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		c.t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// chaosCred is one refresh-token credential: its own client id at the
// authorization server (the credential id hashes resource and client id)
// and its own seed, served under /c<NN>/.
type chaosCred struct {
	clientID, seed, prefix string
}

// chaosRig is the authorization server (behind a proxy), the upstream,
// the credentials and the fleet of instances.
type chaosRig struct {
	t       *testing.T
	as      *fakeoauth.AuthServer
	up      *fakeoauth.Upstream
	asProxy *chaosProxy
	secret  string
	key     string
	creds   []chaosCred
	nodes   []*caddyProc
	// redisProxies[i] sits between nodes[i] and Redis (standalone only).
	redisProxies []*chaosProxy
	// onAnswer, when set, sees each token request before its answer is
	// written (and may hold the answer back by blocking).
	onAnswer atomic.Pointer[func(fakeoauth.TokenRequestLog)]
}

// newChaosRig starts the rig; options adjust the authorization server
// (e.g. a reuse grace).
func newChaosRig(t *testing.T, options ...func(*fakeoauth.AuthServerOptions)) *chaosRig {
	t.Helper()
	r := &chaosRig{t: t}
	opts := fakeoauth.AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true, AccessTTL: chaosAccessTTL,
		OnTokenRequest: func(e fakeoauth.TokenRequestLog) {
			if f := r.onAnswer.Load(); f != nil {
				(*f)(e)
			}
		}}
	for _, o := range options {
		o(&opts)
	}
	as, err := fakeoauth.StartAuthServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{AuthServer: as})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	r.as, r.up, r.secret, r.key = as, up, "cs_"+randomHex(16), base64.StdEncoding.EncodeToString(raw)
	r.asProxy = newChaosProxy(t, "as", strings.TrimPrefix(as.URL(), "http://"))
	for i := range chaosCredentials {
		c := chaosCred{clientID: fmt.Sprintf("chaos-%02d", i), prefix: fmt.Sprintf("/c%02d", i)}
		as.AddClient(c.clientID, r.secret)
		c.seed = as.IssueRefreshToken(c.clientID, []string{"read"})
		r.creds = append(r.creds, c)
	}
	return r
}

// site is the site body: one handle block per credential, its token
// requests going through the authorization server's proxy.
func (r *chaosRig) site() string {
	var b strings.Builder
	upstream := strings.TrimPrefix(r.up.URL(), "http://")
	for i, c := range r.creds {
		fmt.Fprintf(&b, `	handle %s/* {
		oauth_gateway {
			resource       %s
			token_endpoint http://%s/token
			client_id      %s
			client_secret  {env.CHAOS_CLIENT_SECRET}
			refresh_token  {env.CHAOS_SEED_%02d}
			insecure_allow_http
		}
		reverse_proxy %s
	}
`, c.prefix, r.up.Resource(), r.asProxy.Addr, c.clientID, i, upstream)
	}
	return b.String()
}

func (r *chaosRig) env() []string {
	env := []string{"CHAOS_CLIENT_SECRET=" + r.secret, "CHAOS_KEY=" + r.key}
	for i, c := range r.creds {
		env = append(env, fmt.Sprintf("CHAOS_SEED_%02d=%s", i, c.seed))
	}
	return env
}

// startStandalone starts the instances on one Redis at addr, each
// through its own proxy.
func (r *chaosRig) startStandalone(addr string) {
	r.t.Helper()
	prefix := "chaos" + randomHex(4)
	for i := range chaosInstances {
		p := newChaosProxy(r.t, fmt.Sprintf("redis%d", i), addr)
		r.redisProxies = append(r.redisProxies, p)
		r.startNode([]string{"redis://" + p.Addr}, "key_prefix "+prefix)
	}
}

// startNodes starts the instances on Redis URLs (a Sentinel or Cluster)
// with extra lines for the storage block.
func (r *chaosRig) startNodes(urls []string, block ...string) {
	r.t.Helper()
	block = append(block, "key_prefix chaos"+randomHex(4))
	for range chaosInstances {
		r.startNode(urls, block...)
	}
}

func (r *chaosRig) startNode(urls []string, block ...string) {
	r.t.Helper()
	global := fmt.Sprintf(`	oauth_gateway {
		storage redis %s {
%s		}
		encryption_key {env.CHAOS_KEY}
	}`, strings.Join(urls, " "), indent(block))
	// Registered first, so it runs after startCaddy's cleanup stopped
	// the instance: $CHAOS_KEEP_LOGS keeps every instance's log there.
	var p *caddyProc
	idx := len(r.nodes)
	r.t.Cleanup(func() {
		dir := os.Getenv("CHAOS_KEEP_LOGS")
		if dir == "" || p == nil {
			return
		}
		name := strings.NewReplacer("/", "_").Replace(r.t.Name())
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-instance%d.log", name, idx)), []byte(p.Logs()), 0o644)
	})
	p = startCaddy(r.t, r.site(), caddyOptions{Global: global, Env: r.env()})
	r.nodes = append(r.nodes, p)
}
