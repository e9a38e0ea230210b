package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/oauthgw/caddy-oauth-gateway/internal/benchflow"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The processes a measurement runs: Caddy instances built from this
// module, redis-servers, and what is read from them (admin metrics, heap,
// CPU time, Redis INFO). loadbench has similar helpers; it is a main
// package, so they are written again here rather than imported.

// site is what one Caddy instance serves.
type site struct {
	store     string // "memory", "file=<dir>", "redis=<addr>"
	cacheSize int
	upstream  string // host:port of the trivial upstream
	issuer    string // the authorization server of the per-user site
	// redirect is the per-user site's redirect_uri; every instance of a
	// fleet gets the same one, so nothing instance-specific enters the
	// configuration (only the first instance runs the flow).
	redirect string
}

type instance struct {
	cmd                       *exec.Cmd
	dir                       string
	admin, plain, gw          int
	started                   time.Time
	plainURL, gwURL, adminURL string
}

func caddyfile(s site, admin, plain, gw int, redirect string) string {
	store := "storage memory"
	name, arg, _ := strings.Cut(s.store, "=")
	switch name {
	case "file":
		store = "storage file " + arg
	case "redis":
		store = "storage redis redis://" + arg + " {\n\t\t\tkey_prefix costcurve\n\t\t}\n\t\tinsecure_plaintext"
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
		cache_size %d
	}
}
http://127.0.0.1:%d {
	reverse_proxy %s {
		header_up Authorization "Bearer static-token-value"
	}
}
http://127.0.0.1:%d {
	oauth_gateway {
		resource http://%s/
		grant authorization_code
		redirect_uri %s
		principal {http.request.header.X-User}
		issuer %s
		client_id bench
		client_secret bench-secret
		insecure_allow_http
	}
	reverse_proxy %s
}
`, admin, store, max(s.cacheSize, 1), plain, s.upstream, gw, s.upstream, redirect, s.issuer, s.upstream)
}

// startCaddy starts an instance of s; with wait, it returns once the
// gateway port accepts connections.
func startCaddy(bin, cpus string, s site, wait bool) *instance {
	dir, err := os.MkdirTemp("", "costcurve-caddy-")
	check(err)
	in := &instance{dir: dir, admin: benchflow.FreePort(), plain: benchflow.FreePort(), gw: benchflow.FreePort()}
	in.plainURL = fmt.Sprintf("http://127.0.0.1:%d/", in.plain)
	in.gwURL = fmt.Sprintf("http://127.0.0.1:%d/", in.gw)
	in.adminURL = fmt.Sprintf("http://127.0.0.1:%d", in.admin)
	redirect := s.redirect
	if redirect == "" {
		redirect = fmt.Sprintf("http://127.0.0.1:%d/.oauth/callback", in.gw)
	}
	path := filepath.Join(dir, "Caddyfile")
	check(os.WriteFile(path, []byte(caddyfile(s, in.admin, in.plain, in.gw, redirect)), 0o600))
	args := []string{bin, "run", "--config", path, "--adapter", "caddyfile"}
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	in.cmd = exec.Command(args[0], args[1:]...)
	in.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	logf, err := os.Create(filepath.Join(dir, "caddy.log"))
	check(err)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	in.started = time.Now()
	check(in.cmd.Start())
	if !wait {
		return in
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", in.gw)); err == nil {
			c.Close()
			return in
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
	log.Fatalf("caddy did not start:\n%s", b)
	return nil
}

// stop ends the instance gracefully (SIGINT), killing it after 20 s.
func (in *instance) stop() {
	_ = in.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = in.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(in.dir)
}

func stopAll(ins []*instance) {
	for _, in := range ins {
		in.stop()
	}
}

func (in *instance) pid() int { return in.cmd.Process.Pid }

var adminClient = &http.Client{Timeout: 60 * time.Second}

func (in *instance) adminGet(path string) []byte {
	resp, err := adminClient.Get(in.adminURL + path)
	check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	check(err)
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("admin %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// memory is the Go heap in use after a forced GC (pprof's gc=1 runs one;
// it is asked twice so finalizers' garbage goes too) and the RSS.
type memory struct{ heap, rss int64 }

func (in *instance) memory() memory {
	for i := 0; i < 2; i++ {
		in.adminGet("/debug/pprof/heap?gc=1")
	}
	var vars struct {
		Memstats struct{ HeapAlloc int64 } `json:"memstats"`
	}
	check(json.Unmarshal(in.adminGet("/debug/vars"), &vars))
	return memory{heap: vars.Memstats.HeapAlloc, rss: rssOf(in.pid())}
}

// cacheCounts are the gateway's token lookups by result
// (caddy_oauth_gateway_token_cache_total).
type cacheCounts struct{ hit, miss float64 }

func (in *instance) cacheCounts() cacheCounts {
	var c cacheCounts
	sc := bufio.NewScanner(strings.NewReader(string(in.adminGet("/metrics"))))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, r := range []struct {
			label string
			v     *float64
		}{{`result="hit"`, &c.hit}, {`result="miss"`, &c.miss}} {
			if strings.HasPrefix(line, "caddy_oauth_gateway_token_cache_total{") && strings.Contains(line, r.label) {
				f := strings.Fields(line)
				*r.v, _ = strconv.ParseFloat(f[len(f)-1], 64)
			}
		}
	}
	return c
}

func (c cacheCounts) sub(b cacheCounts) cacheCounts {
	return cacheCounts{hit: c.hit - b.hit, miss: c.miss - b.miss}
}

func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuOf(ins []*instance) time.Duration {
	var t time.Duration
	for _, in := range ins {
		t += benchflow.CPUTime(in.pid())
	}
	return t
}

// redisServer is a throwaway redis-server on a free port.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	dir  string
	cli  *redis.Client
}

func startRedis() *redisServer {
	port := benchflow.FreePort()
	dir, err := os.MkdirTemp("", "costcurve-redis-")
	check(err)
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	check(cmd.Start())
	r := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			r.cli = redis.NewClient(&redis.Options{Addr: r.addr})
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatal("redis-server did not start")
	return nil
}

func (r *redisServer) stop() {
	_ = r.cli.Close()
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	_ = os.RemoveAll(r.dir)
}

// info reads one integer field of INFO. Reading total_commands_processed
// counts the INFO itself; callers subtract their own reads.
func (r *redisServer) info(section, field string) int64 {
	s, err := r.cli.Info(context.Background(), section).Result()
	check(err)
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func (r *redisServer) commands() int64 { return r.info("stats", "total_commands_processed") }

// commandCounts are the calls so far by command (INFO commandstats).
func (r *redisServer) commandCounts() map[string]int64 {
	s, err := r.cli.Info(context.Background(), "commandstats").Result()
	check(err)
	counts := map[string]int64{}
	for _, line := range strings.Split(s, "\r\n") {
		// cmdstat_get:calls=12,usec=...
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == line {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		counts[name], _ = strconv.ParseInt(calls, 10, 64)
	}
	return counts
}
func (r *redisServer) usedMemory() int64 {
	return r.info("memory", "used_memory")
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
