// Command loadbench compares the gateway with plain reverse_proxy on
// loopback, in one run, with the rounds interleaved so machine noise hits
// both alike. It is what `make -f xcaddy.mk bench` runs.
//
// It starts a trivial upstream, a fake authorization server, and one
// Caddy per credential store, each with a plain site (reverse_proxy with
// a static `header_up Authorization`) and a gateway site (oauth_gateway
// with a cached token). It prints throughput, the gateway/plain ratio and
// p50/p99 latency per store, then runs a refresh storm (N concurrent
// requests on an invalidated token) and reports the token requests it
// caused.
package main

import (
	"flag"
	"fmt"
	"github.com/oauthgw/caddy-oauth-gateway/internal/benchflow"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

func main() {
	caddyBin := flag.String("caddy", "bin/caddy", "Caddy binary built with the module")
	conc := flag.Int("c", 32, "concurrent connections")
	// Many short rounds: the median of per-round ratios is far steadier
	// than a few long rounds on a small machine.
	round := flag.Duration("round", time.Second, "duration of one round")
	rounds := flag.Int("rounds", 20, "rounds per target")
	storm := flag.Int("storm", 500, "concurrent requests in the refresh storm")
	caddyCPU := flag.String("caddy-cpu", "", "pin Caddy to these CPUs with taskset (e.g. 1); run loadbench itself on the others")
	stores := flag.String("stores", "memory,file,redis", "credential stores to measure (memory, file, redis: a redis-server started here, redis=<url>: an existing one)")
	nUsers := flag.Int("users", 10000, "users of the per-user target (authorization_code, one credential per user, Zipf traffic) in the first store's process; 0: none")
	withDPoP := flag.Bool("dpop", true, "measure a DPoP gateway site (a proof per request) in the first store's process")
	flag.Parse()
	users := benchflow.UserNames(*nUsers)

	upstream := benchflow.TrivialUpstream()
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{AccessTTL: time.Hour, Users: users})
	check(err)
	defer as.Close()
	as.AddClient("bench", "bench-secret")
	validating, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{AuthServer: as})
	check(err)
	defer validating.Close()

	var targets []target
	var procs []*exec.Cmd
	for i, store := range strings.Split(*stores, ",") {
		if store == "redis" {
			addr, stop := startRedis()
			defer stop()
			store = "redis=redis://" + addr
		}
		plainPort, gwPort, stormPort, adminPort, userPort, dpopPort := benchflow.FreePort(), benchflow.FreePort(), benchflow.FreePort(), benchflow.FreePort(), benchflow.FreePort(), benchflow.FreePort()
		cfg := caddyfile(store, adminPort, plainPort, gwPort, stormPort, upstream, as, validating)
		if i == 0 && len(users) > 0 {
			cfg += perUserSite(userPort, upstream, as)
		}
		if i == 0 && *withDPoP {
			cfg += dpopSite(dpopPort, upstream, as)
		}
		proc := startCaddy(*caddyBin, *caddyCPU, cfg, adminPort, gwPort)
		procs = append(procs, proc)
		// Each Caddy serves a plain site too: a gateway is compared with
		// the plain site of its own process, in the same round, so
		// differences between processes do not count as gateway cost.
		storeName := strings.SplitN(store, "=", 2)[0]
		base := len(targets)
		targets = append(targets,
			target{name: "reverse_proxy, " + storeName + " process", url: fmt.Sprintf("http://127.0.0.1:%d/", plainPort), pid: proc.Process.Pid, base: base},
			target{name: "oauth_gateway, " + storeName + " store", url: fmt.Sprintf("http://127.0.0.1:%d/", gwPort), storm: fmt.Sprintf("http://127.0.0.1:%d/echo", stormPort), pid: proc.Process.Pid, base: base})
		if i == 0 && *withDPoP {
			targets = append(targets, target{name: "oauth_gateway + dpop, " + storeName, url: fmt.Sprintf("http://127.0.0.1:%d/", dpopPort), pid: proc.Process.Pid, base: base})
		}
		if i == 0 && len(users) > 0 {
			gw := fmt.Sprintf("http://127.0.0.1:%d", userPort)
			start := time.Now()
			check(benchflow.AuthorizeUsers(gw, users, 8))
			fmt.Printf("authorized %d users through the flow in %s\n", len(users), time.Since(start).Round(time.Millisecond))
			targets = append(targets, target{name: fmt.Sprintf("per-user, %d users, Zipf", len(users)), url: gw + "/", pid: proc.Process.Pid, base: base, users: users})
		}
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGINT)
			_ = p.Wait()
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2, MaxConnsPerHost: *conc * 2}}
	// Warm up every target (the gateway obtains its token here).
	for _, t := range targets {
		if t.users != nil {
			runUsers(client, t.url, t.users, *conc, 300*time.Millisecond)
			continue
		}
		run(client, t.url, *conc, 300*time.Millisecond)
	}

	results := make([][]result, len(targets))
	for r := 0; r < *rounds; r++ {
		for i, t := range targets {
			cpu0 := benchflow.CPUTime(t.pid)
			var res result
			if t.users != nil {
				res = runUsers(client, t.url, t.users, *conc, *round)
			} else {
				res = run(client, t.url, *conc, *round)
			}
			res.cpu = benchflow.CPUTime(t.pid) - cpu0
			results[i] = append(results[i], res)
		}
	}

	fmt.Printf("\nLoad: %d connections, %d interleaved rounds of %s per target, loopback, %d CPUs\n\n", *conc, *rounds, *round, numCPU())
	fmt.Printf("%-34s %10s %8s %10s %10s %14s %8s\n", "target", "req/s", "ratio", "p50", "p99", "caddy CPU/req", "errors")
	for i, t := range targets {
		rps, p50, p99, errs := summarize(results[i])
		ratio := medianRatio(results[i], results[t.base])
		fmt.Printf("%-34s %10.0f %8.3f %10s %10s %14s %8d\n", t.name, rps, ratio, p50, p99, cpuPerRequest(results[i]), errs)
	}
	fmt.Println("\nratio: median over rounds of req/s divided by the req/s of the plain reverse_proxy site in the same Caddy process, same round.")
	fmt.Println("caddy CPU/req: the Caddy process's user+system CPU time over the rounds divided by the requests served.")

	fmt.Printf("\nRefresh storm: %d concurrent requests right after the authorization server invalidated every token\n", *storm)
	for _, t := range targets {
		if t.storm == "" {
			continue
		}
		get(client, t.storm) // token cached
		as.InvalidateAccessTokens()
		before := as.TokenRequests("")
		ok := burst(client, t.storm, *storm)
		fmt.Printf("%-34s %d/%d succeeded, token requests: %d\n", t.name, ok, *storm, as.TokenRequests("")-before)
	}
}

type target struct {
	name, url, storm string
	pid              int // the Caddy serving it, for CPU time per request
	base             int // index of the plain target it is compared with
	users            []string
}

type result struct {
	cpu       time.Duration // Caddy's CPU time during the round
	requests  int64
	errors    int64
	elapsed   time.Duration
	latencies []time.Duration
}

// run drives url with conc keep-alive workers for d.
func run(client *http.Client, url string, conc int, d time.Duration) result {
	return runUsers(client, url, nil, conc, d)
}

func get(client *http.Client, url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func burst(client *http.Client, url string, n int) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if get(client, url) {
				ok.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

func summarize(rs []result) (rps float64, p50, p99 time.Duration, errs int64) {
	var rates []float64
	var all []time.Duration
	for _, r := range rs {
		rates = append(rates, float64(r.requests)/r.elapsed.Seconds())
		all = append(all, r.latencies...)
		errs += r.errors
	}
	sort.Float64s(rates)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		return 0, 0, 0, errs
	}
	return rates[len(rates)/2], all[len(all)/2].Round(time.Microsecond), all[len(all)*99/100].Round(time.Microsecond), errs
}

// medianRatio is the median over rounds of this round's rate divided by
// the baseline's rate in the same round.
func medianRatio(rs, base []result) float64 {
	var ratios []float64
	for i := range rs {
		b := float64(base[i].requests) / base[i].elapsed.Seconds()
		ratios = append(ratios, float64(rs[i].requests)/rs[i].elapsed.Seconds()/b)
	}
	sort.Float64s(ratios)
	return ratios[len(ratios)/2]
}

func caddyfile(store string, admin, plain, gw, storm int, upstream string, as *fakeoauth.AuthServer, validating *fakeoauth.Upstream) string {
	global := "storage memory"
	name, arg, _ := strings.Cut(store, "=")
	switch name {
	case "file":
		dir, _ := os.MkdirTemp("", "loadbench-file-")
		global = "storage file " + dir
	case "redis":
		global = "storage redis " + arg + " {\n\t\t\tkey_prefix loadbench\n\t\t}\n\t\tinsecure_plaintext"
	}
	gateway := func(resource string) string {
		return fmt.Sprintf(`oauth_gateway {
		resource %s
		token_endpoint %s
		client_id bench
		client_secret bench-secret
		insecure_allow_http
	}`, resource, as.TokenURL())
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	log {
		level ERROR
	}
	oauth_gateway {
		%s
	}
}
http://127.0.0.1:%d {
	reverse_proxy %s {
		header_up Authorization "Bearer static-token-value"
	}
}
http://127.0.0.1:%d {
	%s
	reverse_proxy %s
}
http://127.0.0.1:%d {
	%s
	reverse_proxy %s
}
`, admin, global, plain, upstream, gw, gateway("http://"+upstream+"/"), upstream, storm, gateway(validating.Resource()), strings.TrimPrefix(validating.URL(), "http://"))
}

func startCaddy(bin, cpus, cfg string, admin, port int) *exec.Cmd {
	dir, err := os.MkdirTemp("", "loadbench-")
	check(err)
	path := filepath.Join(dir, "Caddyfile")
	check(os.WriteFile(path, []byte(cfg), 0o600))
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	if cpus != "" {
		cmd = exec.Command("taskset", "-c", cpus, bin, "run", "--config", path, "--adapter", "caddyfile")
	}
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	logf, err := os.Create(filepath.Join(dir, "caddy.log"))
	check(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	check(cmd.Start())
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
	log.Fatalf("caddy did not start:\n%s", b)
	return nil
}

// startRedis runs a throwaway redis-server on a free port.
func startRedis() (addr string, stop func()) {
	port := benchflow.FreePort()
	dir, err := os.MkdirTemp("", "loadbench-redis-")
	check(err)
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	check(cmd.Start())
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatal("redis-server did not start")
	return "", nil
}

func cpuPerRequest(rs []result) string {
	var cpu time.Duration
	var n int64
	for _, r := range rs {
		cpu += r.cpu
		n += r.requests
	}
	if n == 0 || cpu == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fµs", float64(cpu.Microseconds())/float64(n))
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
