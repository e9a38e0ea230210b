package main

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/benchflow"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// bench holds what every phase shares.
type bench struct {
	caddyBin, caddyCPU string
	conc               int
	round              time.Duration
	rounds             int
	dist               string
	authWorkers        int
	scan               time.Duration
	scanConc           int
	upstream           string
	as                 *fakeoauth.AuthServer // 1 h tokens: no refresh during the hot-path rounds
	client             *http.Client
}

// row is one line of the cost curve: N credentials in one store, with
// one or more instances.
type row struct {
	n, instances, cache int
	store               string
	ratio               float64 // median over rounds of gateway req/s / plain req/s
	ratioQ1, ratioQ3    float64 // quartiles of those per-round ratios: the spread
	ratioPooled         float64 // all gateway requests / time over all plain requests / time
	gwRPS, plainRPS     float64 // median per round
	gwP99, plainP99     time.Duration
	gwCPU, plainCPU     float64 // Caddy CPU µs per request
	heapPerCred         float64 // Go heap bytes per credential (NaN: not measured)
	rssPerCred          float64
	redisPerCred        float64 // Redis used_memory per credential
	redisPerReq         float64 // Redis commands per proxied gateway request during the rounds
	redisPerLoad        float64 // Redis commands per credential loaded by a request (cold instance)
	missRate            float64 // misses / lookups during the rounds
	missP50, missP99    time.Duration
	hitP50, hitP99      time.Duration // the same scan over fewer users than cache_size
	missFrac            float64       // misses / lookups during the miss-latency scan
	authPerSec          float64       // flow authorizations per second (NaN: none here)
	errors              int64
}

func newRow(n int, store string, instances, cache int) row {
	nan := math.NaN()
	return row{n: n, store: store, instances: instances, cache: cache, heapPerCred: nan, rssPerCred: nan,
		redisPerCred: nan, redisPerReq: nan, redisPerLoad: nan, missRate: nan, missFrac: nan, authPerSec: nan}
}

func (b *bench) newLoad(urls []string, users []string, pick string) *load {
	return &load{client: b.client, urls: urls, users: users, pick: pick, conc: b.conc}
}

func urlsOf(ins []*instance, gw bool) []string {
	var out []string
	for _, in := range ins {
		if gw {
			out = append(out, in.gwURL)
		} else {
			out = append(out, in.plainURL)
		}
	}
	return out
}

// authorize runs the flow for users through in and records the rate.
func (b *bench) authorize(in *instance, users []string, r *row) {
	start := time.Now()
	check(benchflow.AuthorizeUsers(fmt.Sprintf("http://127.0.0.1:%d", in.gw), users, b.authWorkers))
	took := time.Since(start)
	r.authPerSec = float64(len(users)) / took.Seconds()
	fmt.Printf("  authorized %d users through the flow (%s store) in %s, %.0f/s\n", len(users), r.store, took.Round(time.Millisecond), r.authPerSec)
}

// perCred divides a difference by n (NaN for n = 0).
func perCred(after, before int64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(after-before) / float64(n)
}

// compare runs interleaved rounds, the plain site and the gateway of the
// same instances alternating first, and fills the throughput figures of r
// (and Redis commands per request and the cache miss rate).
func (b *bench) compare(ins []*instance, users []string, rs *redisServer, r *row) {
	plain := b.newLoad(urlsOf(ins, false), users, b.dist)
	gw := b.newLoad(urlsOf(ins, true), users, b.dist)
	plain.run(300 * time.Millisecond)
	gw.run(300 * time.Millisecond)
	var cmds0 int64
	if rs != nil {
		cmds0 = rs.commands()
	}
	counts0 := sumCounts(ins)
	var ps, gs []result
	var ratios, prates, grates []float64
	for i := 0; i < b.rounds; i++ {
		var p, g result
		if i%2 == 0 {
			p, g = b.measure(plain, ins), b.measure(gw, ins)
		} else {
			g, p = b.measure(gw, ins), b.measure(plain, ins)
		}
		ps, gs = append(ps, p), append(gs, g)
		prates, grates = append(prates, rate(p)), append(grates, rate(g))
		ratios = append(ratios, rate(g)/rate(p))
	}
	counts := sumCounts(ins).sub(counts0)
	var gwReqs int64
	for _, g := range gs {
		gwReqs += g.requests
		r.errors += g.errors
	}
	if rs != nil {
		r.redisPerReq = float64(rs.commands()-cmds0-1) / float64(max(gwReqs, 1))
	}
	if lookups := counts.hit + counts.miss; lookups > 0 {
		r.missRate = counts.miss / lookups
	}
	r.ratio, r.gwRPS, r.plainRPS = median(ratios), median(grates), median(prates)
	r.ratioQ1, r.ratioQ3 = quantile(ratios, 0.25), quantile(ratios, 0.75)
	r.ratioPooled = pooledRate(gs) / pooledRate(ps)
	r.gwP99, r.plainP99 = percentile(gs, 0.99), percentile(ps, 0.99)
	r.gwCPU, r.plainCPU = cpuPerRequest(gs), cpuPerRequest(ps)
}

func (b *bench) measure(l *load, ins []*instance) result {
	c0 := cpuOf(ins)
	res := l.run(b.round)
	res.cpu = cpuOf(ins) - c0
	return res
}

func sumCounts(ins []*instance) cacheCounts {
	var c cacheCounts
	for _, in := range ins {
		x := in.cacheCounts()
		c.hit += x.hit
		c.miss += x.miss
	}
	return c
}

func cpuPerRequest(rs []result) float64 {
	var cpu time.Duration
	var n int64
	for _, r := range rs {
		cpu += r.cpu
		n += r.requests
	}
	if n == 0 || cpu == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(n)
}

// missLatency scans the users in order with every worker taking the next
// one, so with cache_size below N every lookup misses the LRU; it reports
// the latency of those requests and the miss fraction the gateway counted.
// The same scan over half of cache_size users (all cached after the first
// pass, which is left out) gives the hit latency to compare with.
func (b *bench) missLatency(in *instance, users []string, r *row) {
	l := b.newLoad([]string{in.gwURL}, users, "cyclic")
	l.conc = b.scanConc
	c0 := in.cacheCounts()
	res := l.run(b.scan)
	c := in.cacheCounts().sub(c0)
	if lookups := c.hit + c.miss; lookups > 0 {
		r.missFrac = c.miss / lookups
	}
	r.missP50, r.missP99 = percentile([]result{res}, 0.5), percentile([]result{res}, 0.99)
	r.errors += res.errors
	hot := b.newLoad([]string{in.gwURL}, users[:max(1, r.cache/2)], "cyclic")
	hot.conc = b.scanConc
	r.errors += hot.touchAll(in.gwURL)
	res = hot.run(b.scan)
	r.hitP50, r.hitP99 = percentile([]result{res}, 0.5), percentile([]result{res}, 0.99)
	r.errors += res.errors
}

// steady is the fleet's steady-state cost with short-lived tokens.
type steady struct {
	n, inUse           int
	ttl, window        time.Duration
	requests           int64
	reqPerSec          float64
	tokenPerSec, ideal float64 // token requests/s measured; credentials in use / lifetime
	redisPerSec        float64
	redisPerReq        float64
	errors             int64
	byCommand          string // Redis commands per token request, by command
}

// runSteady authorizes n users against an authorization server issuing
// ttl tokens through the first of three redis instances, drives the load
// over the three for one token lifetime, then for window, and counts
// token requests and Redis commands in the window.
func (b *bench) runSteady(n int, ttl, window time.Duration) steady {
	users := benchflow.UserNames(n)
	as, err := fakeoauth.StartAuthServer(fakeoauth.AuthServerOptions{AccessTTL: ttl, Users: users})
	check(err)
	defer as.Close()
	as.AddClient("bench", "bench-secret")
	rs := startRedis()
	defer rs.stop()
	s := site{store: "redis=" + rs.addr, cacheSize: n, upstream: b.upstream, issuer: as.Issuer()}
	first := startCaddy(b.caddyBin, b.caddyCPU, s, true)
	s.redirect = fmt.Sprintf("http://127.0.0.1:%d/.oauth/callback", first.gw)
	ins := []*instance{first, startCaddy(b.caddyBin, b.caddyCPU, s, true), startCaddy(b.caddyBin, b.caddyCPU, s, true)}
	defer stopAll(ins)
	r := newRow(n, "redis", 3, n)
	b.authorize(first, users, &r)
	l := b.newLoad(urlsOf(ins, true), users, b.dist)
	// One token lifetime of the same load first: the tokens issued while
	// authorizing have expired by now (at 100,000 users that takes
	// minutes), and the instances load each user on first use. Measured
	// after it, the window sees what the load itself costs.
	fmt.Printf("  warming up for one token lifetime (%s)\n", ttl)
	l.run(ttl)
	l.seen = make([]atomic.Bool, n)
	tok0, cmds0, by0 := as.TokenRequests(""), rs.commands(), rs.commandCounts()
	res := l.run(window)
	tok, cmds := as.TokenRequests("")-tok0, rs.commands()-cmds0-2
	by := rs.commandCounts()
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(by)) {
		if d := by[name] - by0[name]; d > 0 && name != "info" {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, float64(d)/float64(max(tok, 1))))
		}
	}
	st := steady{n: n, ttl: ttl, window: res.elapsed, requests: res.requests, errors: res.errors, byCommand: strings.Join(parts, ", ")}
	for i := range l.seen {
		if l.seen[i].Load() {
			st.inUse++
		}
	}
	secs := res.elapsed.Seconds()
	st.reqPerSec = float64(res.requests) / secs
	st.tokenPerSec = float64(tok) / secs
	st.ideal = float64(st.inUse) / ttl.Seconds()
	st.redisPerSec = float64(cmds) / secs
	st.redisPerReq = float64(cmds) / float64(max(res.requests, 1))
	return st
}

// startup is one instance's start over a store holding n credentials.
type startup struct {
	store         string
	n             int
	firstResponse time.Duration // process start to the first HTTP answer of the gateway site
	firstServed   time.Duration // process start to the first 200 proxied with a stored credential
	heap, rss     int64         // after that request, after a GC
	seedTook      time.Duration // how long storing the n credentials took (flow)
	seedRate      float64
}

// measureStartup starts an instance of s and polls its gateway site for
// user until it answers 200 (a stored credential used without a new
// authorization); with user "" any answer counts (an empty store).
func (b *bench) measureStartup(s site, user string) startup {
	in := startCaddy(b.caddyBin, b.caddyCPU, s, false)
	defer in.stop()
	var st startup
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Transport: &http.Transport{}}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, in.gwURL, nil)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		resp.Body.Close()
		if st.firstResponse == 0 {
			st.firstResponse = time.Since(in.started)
		}
		if user == "" || resp.StatusCode == http.StatusOK {
			st.firstServed = time.Since(in.started)
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if st.firstServed == 0 {
		fmt.Printf("  startup over %s: no 200 for a stored credential within 60 s\n", s.store)
	}
	m := in.memory()
	st.heap, st.rss = m.heap, m.rss
	return st
}
