package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
)

// fleet is several Caddy instances sharing one Redis store.
type fleet struct {
	e     *env
	seed  string
	key   string
	nodes []*caddyProc
}

const fleetTTL = 3 * time.Second

func startFleet(t *testing.T, n int, redisURLs []string, redisBlock string) *fleet {
	t.Helper()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true, AccessTTL: fleetTTL}, fakeoauth.UpstreamOptions{})
	f := &fleet{e: e, seed: e.as.IssueRefreshToken(e.clientID, []string{"read"})}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	f.key = base64.StdEncoding.EncodeToString(raw)
	global := fmt.Sprintf(`	oauth_gateway {
		storage redis %s {
			key_prefix %s
%s
		}
		encryption_key {env.TEST_KEY}
	}`, strings.Join(redisURLs, " "), "fleet"+randomHex(4), redisBlock)
	site := e.gatewaySite("grant refresh_token", "refresh_token {env.TEST_SEED}")
	envs := append(e.secretEnv(), "TEST_SEED="+f.seed, "TEST_KEY="+f.key)
	for i := 0; i < n; i++ {
		f.nodes = append(f.nodes, startCaddy(t, site, caddyOptions{Global: global, Env: envs}))
	}
	return f
}

// loadResult counts what a load run saw, per second of the run.
type loadResult struct {
	requests, failures atomic.Int64
	failedAt           sync.Map // second -> count
}

// load spreads concurrent GETs over the fleet for d, calling during(sec)
// once per second so a test can act mid-run.
func (f *fleet) load(t *testing.T, d time.Duration, workers int, during func(sec int)) *loadResult {
	t.Helper()
	res := &loadResult{}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				node := f.nodes[i%len(f.nodes)]
				resp, err := client.Get(node.URL("/echo"))
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					resp.Body.Close()
				}
				if ctx.Err() != nil && !ok {
					return // the run ended mid-request
				}
				res.requests.Add(1)
				if !ok {
					res.failures.Add(1)
					sec := int(time.Since(start) / time.Second)
					v, _ := res.failedAt.LoadOrStore(sec, new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for sec := 1; ctx.Err() == nil; sec++ {
		select {
		case <-time.After(time.Until(start.Add(time.Duration(sec) * time.Second))):
			if during != nil {
				during(sec)
			}
		case <-ctx.Done():
		}
	}
	wg.Wait()
	return res
}

func (r *loadResult) failureSeconds() []int {
	var secs []int
	r.failedAt.Range(func(k, _ any) bool { secs = append(secs, k.(int)); return true })
	return secs
}

// Issue 5, acceptance 1: three instances, one Redis, strict rotation with
// family revocation, 3 s tokens, 30 s of load: no failure, no reuse, about
// one token request per token lifetime.
func TestFleetSharesRotatingCredential(t *testing.T) {
	// Serial (no t.Parallel): it measures the fleet under 30 s of load
	// (no failed request, refreshes per token lifetime); other tests' load
	// would change what it measures.
	r := redistest.Start(t)
	f := startFleet(t, 3, []string{r.URL()}, "")
	res := f.load(t, 30*time.Second, 6, nil)
	refreshes := f.e.as.TokenRequests("refresh_token")
	t.Logf("standalone: %d requests over 3 instances in 30s, %d failed, %d token requests (%.2f per %s token lifetime), %d reuse detections",
		res.requests.Load(), res.failures.Load(), refreshes, float64(refreshes)/(30/fleetTTL.Seconds()), fleetTTL, f.e.as.ReuseDetections())
	if res.failures.Load() != 0 {
		t.Errorf("%d failed requests (seconds %v)", res.failures.Load(), res.failureSeconds())
	}
	if f.e.as.ReuseDetections() != 0 {
		t.Errorf("%d reuse detections", f.e.as.ReuseDetections())
	}
	// One per lifetime is 10 in 30 s; background refresh at 4/5 of the
	// lifetime makes it 12.5; allow for startup.
	if refreshes < 8 || refreshes > 20 {
		t.Errorf("%d token requests in 30 s for 3 s tokens", refreshes)
	}
	for _, n := range f.nodes {
		assertNoSecrets(t, n.Logs(), f.e.secrets(f.seed, f.key)...)
	}
	// Records in Redis are unreadable without the key: no secret in any
	// stored byte.
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	keys, err := rc.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v %v", keys, err)
	}
	var stored strings.Builder
	for _, k := range keys {
		if v, err := rc.HGetAll(context.Background(), k).Result(); err == nil {
			for field, val := range v {
				fmt.Fprintf(&stored, "%s=%s\n", field, val)
			}
		}
	}
	if !strings.Contains(stored.String(), "data=OGW2") {
		t.Errorf("no sealed record found in Redis")
	}
	for _, s := range f.e.secrets(f.seed) {
		if strings.Contains(stored.String(), s) {
			t.Fatalf("a secret is readable in Redis")
		}
	}
}

// Issue 5, acceptance 2: Redis stops for 5 s during the load and comes
// back: no reuse detection, no lost credential, failures only while a token
// had to be refreshed, full recovery afterwards.
func TestFleetSurvivesRedisOutage(t *testing.T) {
	// Serial (no t.Parallel): it measures the fleet under 30 s of load
	// (failures only in the seconds of the outage); other tests' load
	// would change what it measures.
	// Redis with an append-only file, as production Redis should run:
	// a restart keeps the credentials.
	r := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	f := startFleet(t, 3, []string{r.URL()}, "")
	const down, up = 10, 15
	res := f.load(t, 30*time.Second, 6, func(sec int) {
		switch sec {
		case down:
			r.Stop()
		case up:
			r.Restart()
		}
	})
	secs := res.failureSeconds()
	t.Logf("outage %ds-%ds: %d requests, %d failed in seconds %v, %d token requests, %d reuse detections",
		down, up, res.requests.Load(), res.failures.Load(), secs, f.e.as.TokenRequests("refresh_token"), f.e.as.ReuseDetections())
	if f.e.as.ReuseDetections() != 0 {
		t.Errorf("%d reuse detections", f.e.as.ReuseDetections())
	}
	for _, s := range secs {
		// Tokens cached before the outage stay valid for up to 3 s;
		// after the restart, backoff (at most a few seconds) ends.
		if s < down || s > up+6 {
			t.Errorf("failures at second %d, outside the outage", s)
		}
	}
	// Fully recovered: every instance serves, and the credential is alive.
	for _, n := range f.nodes {
		if status, body, _ := get(t, n.URL("/echo")); status != http.StatusOK {
			t.Errorf("after recovery: %d %s", status, body)
		}
	}
	if n := debugLines(f.nodes[0].Logs()+f.nodes[1].Logs()+f.nodes[2].Logs(), "refresh lock unavailable"); n == 0 {
		t.Error("the outage is not visible in the logs")
	}
}

// Issue 5, acceptance 3: the same fleet on Redis Cluster (three masters).
func TestFleetOnRedisCluster(t *testing.T) {
	// Serial (no t.Parallel): it measures the fleet under 30 s of load
	// (no failed request, refreshes per token lifetime); other tests' load
	// would change what it measures.
	nodes := redistest.StartCluster(t)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	f := startFleet(t, 3, urls, "")
	res := f.load(t, 30*time.Second, 6, nil)
	refreshes := f.e.as.TokenRequests("refresh_token")
	t.Logf("cluster: %d requests, %d failed, %d token requests, %d reuse detections",
		res.requests.Load(), res.failures.Load(), refreshes, f.e.as.ReuseDetections())
	if res.failures.Load() != 0 || f.e.as.ReuseDetections() != 0 {
		t.Errorf("%d failures (seconds %v), %d reuse detections", res.failures.Load(), res.failureSeconds(), f.e.as.ReuseDetections())
	}
	if refreshes < 8 || refreshes > 20 {
		t.Errorf("%d token requests in 30 s for 3 s tokens", refreshes)
	}
}

// Redis without a key refuses to start; with insecure_plaintext it runs.
func TestRedisRequiresEncryptionKey(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	p := startCaddyExpectFailure(t, e.gatewaySite(), fmt.Sprintf("\toauth_gateway {\n\t\tstorage redis %s\n\t}", r.URL()))
	if !strings.Contains(p, "encryption_key") {
		t.Fatalf("error does not say what to do:\n%s", tail(p, 5))
	}
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv(),
		Global: fmt.Sprintf("\toauth_gateway {\n\t\tstorage redis %s\n\t\tinsecure_plaintext\n\t}", r.URL())})
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatal("insecure_plaintext config does not work")
	}
}

// startCaddyExpectFailure runs `caddy validate` on the site with global
// and returns its output; the test fails if the config is accepted.
func startCaddyExpectFailure(t *testing.T, site, global string) string {
	t.Helper()
	cfg := "{\n" + strings.ReplaceAll(globalOptions, "{ADMIN}", "0") + global + "\n}\n\nhttp://127.0.0.1:1 {\n" + site + "\n}\n"
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("config accepted:\n%s", cfg)
	}
	return string(out)
}
