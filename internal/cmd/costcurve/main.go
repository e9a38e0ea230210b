// Command costcurve measures how the gateway's costs grow with the number
// of credentials it holds: hot-path throughput against plain
// reverse_proxy, memory per credential, cache misses when cache_size is
// below the working set, Redis and token-endpoint traffic of a fleet at
// steady state, and start-up over a store with many credentials.
//
// Like loadbench it starts real Caddy processes built from this module
// (make -f xcaddy.mk build), a fake authorization server and a trivial
// upstream on loopback. The credentials are per-user (grant
// authorization_code, principal from the X-User header), each authorized
// through the real flow, since that is how one handler comes to hold N
// credentials. It prints markdown tables and writes CSV files and PNG
// plots to -out.
package main

import (
	"flag"
	"fmt"
	"github.com/oauthgw/caddy-oauth-gateway/internal/benchflow"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

func main() {
	caddyBin := flag.String("caddy", "bin/caddy", "Caddy binary built with the module (make -f xcaddy.mk build)")
	caddyCPU := flag.String("caddy-cpu", "auto", `CPUs for Caddy (taskset list); "auto": the last CPU for Caddy and the others for this program (re-executed under taskset) when there are 2+; "": no pinning`)
	sizesFlag := flag.String("sizes", "1,100,10000,100000", "numbers of credentials, comma-separated")
	conc := flag.Int("c", 32, "concurrent connections of the load")
	round := flag.Duration("round", time.Second, "duration of one throughput round")
	rounds := flag.Int("rounds", 10, "interleaved rounds per comparison (each runs plain then gateway, or the reverse)")
	dist := flag.String("dist", "uniform", "how requests pick a credential: uniform or zipf (s = 1.1)")
	authWorkers := flag.Int("auth-workers", 8, "concurrent authorization flows while storing credentials")
	scan := flag.Duration("scan", 0, "duration of the miss-latency scan (cache_size = N/10); 0: 2 rounds")
	ttl := flag.Duration("ttl", 60*time.Second, "access token lifetime of the steady-state measurement")
	steadyWin := flag.Duration("steady", 0, "steady-state measurement window; 0: one refresh interval (4/5 of -ttl)")
	steadySizes := flag.String("steady-sizes", "max", `sizes to measure at steady state: "max" (the largest of -sizes), "all", "none" or a list`)
	startupSize := flag.Int("startup-size", -1, "credentials stored before the start-up measurement; -1: the largest of -sizes, 0: skip")
	fileStartupSize := flag.Int("file-startup-size", -1, "credentials stored in the file store before its start-up measurement (stored through the flow at ~200/s); -1: as -startup-size")
	scanConc := flag.Int("scan-c", 1, "connections of the miss-latency scan and its hit baseline (1: a miss's own cost, no queueing)")
	phasesFlag := flag.String("phases", "memory,redis,steady,startup", "what to measure: memory (memory store), redis (1 and 3 instances, and cache_size N/10), steady, startup")
	out := flag.String("out", "bench-out", "directory for the CSV files and PNG plots")
	flag.Parse()
	phases := map[string]bool{}
	for _, p := range strings.Split(*phasesFlag, ",") {
		phases[strings.TrimSpace(p)] = true
	}

	*caddyCPU = pin(*caddyCPU)
	sizes := parseSizes(*sizesFlag)
	largest := slices.Max(sizes)
	if *startupSize < 0 {
		*startupSize = largest
	}
	if *fileStartupSize < 0 {
		*fileStartupSize = *startupSize
	}
	if *scan <= 0 {
		*scan = 2 * *round
	}
	if *steadyWin <= 0 {
		*steadyWin = *ttl * 4 / 5
	}
	steadyAt := map[int]bool{}
	switch *steadySizes {
	case "max":
		steadyAt[largest] = true
	case "all":
		for _, n := range sizes {
			steadyAt[n] = true
		}
	case "none":
	default:
		for _, n := range parseSizes(*steadySizes) {
			steadyAt[n] = true
		}
	}

	allUsers := benchflow.UserNames(max(largest, *startupSize, *fileStartupSize))
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{AccessTTL: time.Hour, Users: allUsers})
	check(err)
	defer as.Close()
	as.AddClient("bench", "bench-secret")
	b := &bench{
		caddyBin: *caddyBin, caddyCPU: *caddyCPU, conc: *conc, round: *round, rounds: *rounds,
		dist: *dist, authWorkers: *authWorkers, scan: *scan, scanConc: *scanConc, upstream: benchflow.TrivialUpstream(), as: as,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2, MaxConnsPerHost: *conc * 2}},
	}
	machine := machineDescription()
	fmt.Printf("costcurve: %s; Caddy CPUs %q; %d connections, %d interleaved rounds of %s, %s traffic\n",
		machine, *caddyCPU, *conc, *rounds, *round, *dist)
	start := time.Now()

	var rows []row
	var steadies []steady
	var starts []startup
	for _, n := range sizes {
		fmt.Printf("\n== %d credentials (%s elapsed)\n", n, time.Since(start).Round(time.Second))
		users := allUsers[:n]
		if phases["memory"] {
			rows = append(rows, b.memoryRow(users))
		}
		if phases["steady"] && steadyAt[n] && !phases["redis"] && !(phases["startup"] && n == *startupSize) {
			fmt.Printf("  steady state: 3 redis instances, %s tokens, %s window\n", *ttl, *steadyWin)
			steadies = append(steadies, b.runSteady(n, *ttl, *steadyWin))
			continue
		}
		if !phases["redis"] && !(phases["startup"] && n == *startupSize) {
			continue
		}
		rs := startRedis()
		if phases["redis"] {
			rows = append(rows, b.redisRows(users, rs)...)
		}
		if phases["startup"] && n == *startupSize {
			if !phases["redis"] {
				b.seedRedis(users, rs)
			}
			fmt.Println("  start-up over redis")
			st := b.measureStartup(site{store: "redis=" + rs.addr, cacheSize: n, upstream: b.upstream, issuer: as.Issuer(),
				redirect: "http://127.0.0.1:1/.oauth/callback"}, users[0])
			st.store, st.n = "redis", n
			starts = append(starts, st)
		}
		rs.stop()
		if phases["steady"] && steadyAt[n] {
			fmt.Printf("  steady state: 3 redis instances, %s tokens, %s window\n", *ttl, *steadyWin)
			steadies = append(steadies, b.runSteady(n, *ttl, *steadyWin))
		}
	}
	if phases["startup"] && *fileStartupSize > 0 {
		fmt.Printf("\n== start-up over a file store with %d credentials\n", *fileStartupSize)
		starts = append(starts, b.fileStartup(allUsers[:*fileStartupSize]))
	}
	if phases["startup"] {
		st := b.measureStartup(site{store: "memory", cacheSize: 1, upstream: b.upstream, issuer: as.Issuer()}, "")
		st.store = "memory (empty)"
		starts = append(starts, st)
	}
	fmt.Printf("\nfinished in %s\n", time.Since(start).Round(time.Second))
	report(*out, machine, b, rows, steadies, starts)
}

// memoryRow: one instance with the memory store (per process, so one
// instance), every credential authorized through it.
func (b *bench) memoryRow(users []string) row {
	n := len(users)
	in := startCaddy(b.caddyBin, b.caddyCPU, site{store: "memory", cacheSize: n, upstream: b.upstream, issuer: b.as.Issuer()}, true)
	defer in.stop()
	r := newRow(n, "memory", 1, n)
	before := in.memory()
	b.authorize(in, users, &r)
	r.errors += b.newLoad(nil, users, "").touchAll(in.gwURL)
	after := in.memory()
	r.heapPerCred, r.rssPerCred = perCred(after.heap, before.heap, n), perCred(after.rss, before.rss, n)
	b.compare([]*instance{in}, users, nil, &r)
	return r
}

// redisRows: one instance over Redis (credentials authorized through
// it), then three (two more loading the credentials by request), then one
// with cache_size N/10 (from N = 10).
func (b *bench) redisRows(users []string, rs *redisServer) []row {
	n := len(users)
	s := site{store: "redis=" + rs.addr, cacheSize: n, upstream: b.upstream, issuer: b.as.Issuer()}
	first := startCaddy(b.caddyBin, b.caddyCPU, s, true)
	s.redirect = fmt.Sprintf("http://127.0.0.1:%d/.oauth/callback", first.gw)
	one := newRow(n, "redis", 1, n)
	before, rmem := first.memory(), rs.usedMemory()
	b.authorize(first, users, &one)
	l := b.newLoad(nil, users, "")
	one.errors += l.touchAll(first.gwURL)
	after := first.memory()
	one.heapPerCred, one.rssPerCred = perCred(after.heap, before.heap, n), perCred(after.rss, before.rss, n)
	one.redisPerCred = perCred(rs.usedMemory(), rmem, n)
	b.compare([]*instance{first}, users, rs, &one)

	ins := []*instance{first, startCaddy(b.caddyBin, b.caddyCPU, s, true), startCaddy(b.caddyBin, b.caddyCPU, s, true)}
	three := newRow(n, "redis", 3, n)
	before, cmds := ins[1].memory(), rs.commands()
	for _, in := range ins[1:] {
		three.errors += l.touchAll(in.gwURL)
	}
	three.redisPerLoad = float64(rs.commands()-cmds-1) / float64(2*n)
	after = ins[1].memory()
	three.heapPerCred, three.rssPerCred = perCred(after.heap, before.heap, n), perCred(after.rss, before.rss, n)
	b.compare(ins, users, rs, &three)
	stopAll(ins)
	rows := []row{one, three}

	if n >= 10 {
		s.cacheSize = n / 10
		in := startCaddy(b.caddyBin, b.caddyCPU, s, true)
		small := newRow(n, "redis", 1, s.cacheSize)
		before, cmds := in.memory(), rs.commands()
		small.errors += l.touchAll(in.gwURL)
		small.redisPerLoad = float64(rs.commands()-cmds-1) / float64(n)
		after := in.memory()
		small.heapPerCred, small.rssPerCred = perCred(after.heap, before.heap, n), perCred(after.rss, before.rss, n)
		b.compare([]*instance{in}, users, rs, &small)
		b.missLatency(in, users, &small)
		in.stop()
		rows = append(rows, small)
	}
	return rows
}

// seedRedis stores the users' credentials in rs through one instance
// (when the redis rows, which do that, are not measured).
func (b *bench) seedRedis(users []string, rs *redisServer) {
	in := startCaddy(b.caddyBin, b.caddyCPU, site{store: "redis=" + rs.addr, cacheSize: len(users), upstream: b.upstream, issuer: b.as.Issuer()}, true)
	defer in.stop()
	r := newRow(len(users), "redis", 1, len(users))
	b.authorize(in, users, &r)
}

// fileStartup stores the users' credentials in a file store through one
// instance, stops it, and measures a new instance's start over the files.
func (b *bench) fileStartup(users []string) startup {
	dir, err := os.MkdirTemp("", "costcurve-file-")
	check(err)
	defer os.RemoveAll(dir)
	s := site{store: "file=" + dir, cacheSize: len(users), upstream: b.upstream, issuer: b.as.Issuer()}
	in := startCaddy(b.caddyBin, b.caddyCPU, s, true)
	r := newRow(len(users), "file", 1, len(users))
	t0 := time.Now()
	b.authorize(in, users, &r)
	took := time.Since(t0)
	in.stop()
	st := b.measureStartup(s, users[0])
	st.store, st.n, st.seedTook, st.seedRate = "file", len(users), took, r.authPerSec
	return st
}

// pin applies -caddy-cpu auto: Caddy on the last CPU, and this program
// re-executed under taskset on the others, so load and Caddy do not
// compete (as make bench does for loadbench).
func pin(flagValue string) string {
	if flagValue != "auto" {
		return flagValue
	}
	if last := os.Getenv("COSTCURVE_CADDY_CPU"); last != "" {
		return last
	}
	taskset, err := exec.LookPath("taskset")
	n := runtime.NumCPU()
	if err != nil || n < 2 {
		return ""
	}
	exe, err := os.Executable()
	check(err)
	last := strconv.Itoa(n - 1)
	args := append([]string{"taskset", "-c", fmt.Sprintf("0-%d", n-2), exe}, os.Args[1:]...)
	check(syscall.Exec(taskset, args, append(os.Environ(), "COSTCURVE_CADDY_CPU="+last)))
	return last
}

func parseSizes(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			check(fmt.Errorf("bad size %q", f))
		}
		out = append(out, n)
	}
	return out
}

func machineDescription() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	ncpu := runtime.NumCPU()
	if b, err := exec.Command("nproc", "--all").Output(); err == nil {
		ncpu, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", ncpu, model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
