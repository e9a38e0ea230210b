package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// caddyProc is a running Caddy process.
type caddyProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	config  string
	dataDir string // XDG_DATA_HOME: Caddy's data directory lives under it
	logPath string
	port    int
	admin   int
	exited  chan struct{}
	mu      sync.Mutex
}

// caddyOptions tune startCaddy.
type caddyOptions struct {
	// DataDir reuses a data directory (for restarts); default: a new one.
	DataDir string
	// Global is inserted into the global options block.
	Global string
	// Env adds environment variables.
	Env []string
}

// startCaddy runs Caddy with site as the body of a site block on a free
// port. {PORT} in site is replaced with that port.
func startCaddy(t *testing.T, site string, opts caddyOptions) *caddyProc {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	p := &caddyProc{t: t, dataDir: opts.DataDir, port: freePort(t), admin: freePort(t)}
	dir := t.TempDir()
	p.config = filepath.Join(dir, "Caddyfile")
	p.logPath = filepath.Join(dir, "caddy.log")
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	skip_install_trust
	persist_config off
	log {
		level DEBUG
	}
	metrics
%s
}

http://127.0.0.1:%d {
	log
%s
}
`, p.admin, opts.Global, p.port, strings.ReplaceAll(site, "{PORT}", fmt.Sprint(p.port)))
	if err := os.WriteFile(p.config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(opts.Env)
	t.Cleanup(p.Stop)
	return p
}

func (p *caddyProc) start(env []string) {
	t := p.t
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "run", "--config", p.config, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"HOME="+p.dataDir,
		"XDG_DATA_HOME="+p.dataDir,
		"XDG_CONFIG_HOME="+p.dataDir,
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("caddy exited during startup:\n%s", tail(p.Logs(), 40))
		default:
		}
		if resp, err := http.Get(p.AdminURL("/config/")); err == nil {
			resp.Body.Close()
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), time.Second); err == nil {
				c.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy not ready after 20s:\n%s", tail(p.Logs(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops Caddy gracefully (SIGINT) and waits for it.
func (p *caddyProc) Stop() { p.signal(syscall.SIGINT) }

// Kill stops Caddy with SIGKILL: nothing is flushed or cleaned up.
func (p *caddyProc) Kill() { p.signal(syscall.SIGKILL) }

func (p *caddyProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart starts Caddy again with the same config and data directory.
func (p *caddyProc) Restart(env ...string) {
	p.t.Helper()
	p.Stop()
	p.start(env)
}

// Logs returns everything Caddy wrote so far.
func (p *caddyProc) Logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// URL returns a URL on the site.
func (p *caddyProc) URL(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path) }

// AdminURL returns a URL on the admin endpoint.
func (p *caddyProc) AdminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.admin, path)
}

// freePort returns a currently free loopback TCP port.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// assertNoSecrets fails if any secret appears in logs; it shows the line
// with the secret masked.
func assertNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		for _, s := range secrets {
			if len(s) >= 6 && strings.Contains(line, s) {
				t.Errorf("log line %d contains a secret: %s", n, strings.ReplaceAll(line, s, "<SECRET>"))
			}
		}
	}
	if len(logs) == 0 {
		t.Error("no logs captured: the scan proves nothing")
	}
}

// debugLines counts log lines containing all of the given substrings.
func debugLines(logs string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// get performs a GET with optional headers and returns status and body.
func get(t *testing.T, url string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), resp.Header
}
