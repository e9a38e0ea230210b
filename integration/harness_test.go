package integration

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/testports"
)

const (
	startTimeout = 20 * time.Second // Caddy up: admin answers, site port accepts
	stopTimeout  = 15 * time.Second // graceful stop before SIGKILL
)

// globalOptions open every generated Caddyfile: a per-test admin port,
// debug logs (the secret scans must see everything), no HTTPS automation
// and no trust store changes on the test machine.
const globalOptions = `	admin 127.0.0.1:{ADMIN}
	auto_https off
	skip_install_trust
	persist_config off
	log {
		level DEBUG
	}
	metrics
`

// caddyProc is a running Caddy process.
type caddyProc struct {
	t        *testing.T
	template string // the Caddyfile with {PORT} and {ADMIN} unreplaced
	config   string // path of the written Caddyfile
	dataDir  string // HOME and XDG_*: Caddy's data dir is dataDir/caddy
	logPath  string
	port     int
	admin    int

	mu     sync.Mutex
	cmd    *exec.Cmd
	env    []string
	exited chan struct{}
}

// caddyOptions tune startCaddy.
type caddyOptions struct {
	// DataDir reuses a data directory (state across processes, several
	// instances sharing one); default: a new one per call.
	DataDir string
	// Global is added to the global options block (ignored when the
	// config is a whole Caddyfile).
	Global string
	// Env adds environment variables ("K=V") to Caddy's.
	Env []string
	// Port and AdminPort fix the ports; default: free ones.
	Port, AdminPort int
}

// startCaddy runs `caddy run` and waits until it serves. config is
// either a whole Caddyfile template (it contains {ADMIN}; use
// http://127.0.0.1:{PORT} as the site address and `admin
// 127.0.0.1:{ADMIN}`, or globalOptions) or the body of the one site
// block, which gets the standard global options. {PORT} and {ADMIN} are
// replaced with the ports chosen. Cleanup stops Caddy.
func startCaddy(t *testing.T, config string, opts caddyOptions) *caddyProc {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if !strings.Contains(config, "{ADMIN}") {
		// The site's access log goes to the same log, so secret scans
		// cover it too.
		config = "{\n" + globalOptions + opts.Global + "\n}\n\nhttp://127.0.0.1:{PORT} {\n\tlog\n" + config + "\n}\n"
	}
	dir := t.TempDir()
	p := &caddyProc{
		t: t, template: config, dataDir: opts.DataDir,
		config:  filepath.Join(dir, "Caddyfile"),
		logPath: filepath.Join(dir, "caddy.log"),
		env:     opts.Env,
	}
	t.Cleanup(func() {
		p.Stop()
		// A race-enabled Caddy reports races in its log; they are
		// failures of this test even though the requests succeeded.
		if i := strings.Index(p.Logs(), "WARNING: DATA RACE"); i >= 0 {
			t.Errorf("data race inside Caddy:\n%s", p.Logs()[i:min(len(p.Logs()), i+12000)])
		}
		if t.Failed() {
			t.Logf("caddy log tail (%s):\n%s", p.logPath, tail(p.Logs(), 40))
		}
	})
	for attempt := 1; ; attempt++ {
		p.port, p.admin = opts.Port, opts.AdminPort
		if p.port == 0 {
			p.port = freePort(t)
		}
		if p.admin == 0 {
			p.admin = freePort(t)
		}
		p.writeConfig()
		// freePort holds its ports against other processes' pickers;
		// Caddy cannot bind them until they are let go.
		testports.Release(p.port)
		testports.Release(p.admin)
		from := len(p.Logs())
		err := p.launch(opts.Env)
		if err == nil {
			return p
		}
		// Someone may still bind a port between its release and Caddy's
		// bind: start again on other ports, but only if the port Caddy
		// could not bind is one chosen here (a fixed one would fail again).
		busy := portInUse(p.Logs()[from:])
		ours := busy != 0 && (busy == p.port && opts.Port == 0 || busy == p.admin && opts.AdminPort == 0)
		if !ours || attempt == 3 {
			t.Fatalf("starting caddy: %v\n%s", err, tail(p.Logs(), 40))
		}
		t.Logf("port %d was taken before caddy bound it; retrying caddy with other ports", busy)
	}
}

// bindInUse matches the error Caddy logs (and exits with) when it cannot
// bind a listener, e.g. "listen tcp 127.0.0.1:2019: bind: address already
// in use" for the admin API or "listen tcp :8080: ..." for a site.
var bindInUse = regexp.MustCompile(`listen tcp [^ ]*:(\d+): bind: address already in use`)

// portInUse returns the port a Caddy log says was already in use, or 0.
func portInUse(log string) int {
	m := bindInUse.FindStringSubmatch(log)
	if m == nil {
		return 0
	}
	port, _ := strconv.Atoi(m[1])
	return port
}

func (p *caddyProc) writeConfig() {
	cfg := strings.NewReplacer("{PORT}", fmt.Sprint(p.port), "{ADMIN}", fmt.Sprint(p.admin)).Replace(p.template)
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// start runs Caddy again on the same config, ports and data directory,
// failing the test if it does not come up. A nil env reuses the last one.
func (p *caddyProc) start(env []string) {
	p.t.Helper()
	if err := p.launch(env); err != nil {
		p.t.Fatalf("starting caddy: %v\n%s", err, tail(p.Logs(), 40))
	}
}

// launch starts the process and waits for it to serve.
func (p *caddyProc) launch(env []string) error {
	p.mu.Lock()
	if env == nil {
		env = p.env
	}
	p.env = env
	p.mu.Unlock()

	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
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
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	probe := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("caddy exited during startup (%s)", cmd.ProcessState)
		default:
		}
		if resp, err := probe.Get(p.AdminURL("/config/")); err == nil {
			resp.Body.Close()
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), time.Second); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("caddy not ready after %s", startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops Caddy gracefully (SIGINT, as Ctrl-C would) and waits for it;
// after stopTimeout it kills it and fails the test.
func (p *caddyProc) Stop() {
	if !p.signal(syscall.SIGINT) {
		p.t.Errorf("caddy did not stop within %s of SIGINT; killed", stopTimeout)
	}
}

// Kill stops Caddy with SIGKILL: nothing is flushed or cleaned up.
func (p *caddyProc) Kill() { p.signal(syscall.SIGKILL) }

// signal sends sig and waits for the exit; false if it had to SIGKILL.
func (p *caddyProc) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-exited:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return true
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return false
	}
}

// Running reports whether the Caddy process is alive.
func (p *caddyProc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Restart stops Caddy gracefully and starts it again with the same
// config, ports and data directory. env replaces the environment added
// at start; none given keeps it.
func (p *caddyProc) Restart(env ...string) {
	p.t.Helper()
	p.Stop()
	if len(env) == 0 {
		env = nil
	}
	p.start(env)
}

// Pid is the running Caddy's process id.
func (p *caddyProc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Logs returns everything Caddy wrote so far, over all its runs.
func (p *caddyProc) Logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// URL returns a URL on the site.
func (p *caddyProc) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path)
}

// AdminURL returns a URL on the admin endpoint.
func (p *caddyProc) AdminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.admin, path)
}

// freePort returns a port that no other freePort (or redistest) call in
// this process returns, free on 127.0.0.1 and on the wildcard address, and
// held until testports.Release (startCaddy releases its ports just before
// starting Caddy) or the end of the test. internal/testports says why.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := testports.Hold()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testports.Release(port) })
	return port
}

// assertNoSecrets fails for every log line holding a secret, raw or in
// the encodings a logger would apply (URL query, JSON string escaping).
// It names the line and shows a short excerpt with every secret masked,
// so the failure output does not leak what it reports. Secrets shorter
// than 6 characters cannot be told from ordinary text and are refused.
func assertNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	if len(logs) == 0 {
		t.Error("no logs captured: the secret scan proves nothing")
		return
	}
	type needle struct {
		text  string
		label string
	}
	var needles []needle
	for i, s := range secrets {
		if s == "" {
			continue
		}
		if len(s) < 6 {
			t.Errorf("secret #%d is too short to scan for", i)
			continue
		}
		for _, form := range secretForms(s) {
			needles = append(needles, needle{form.text, fmt.Sprintf("secret #%d (%s)", i, form.name)})
		}
	}
	masker := maskAll(needles, func(n needle) string { return n.text })
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		for _, nd := range needles {
			if i := strings.Index(line, nd.text); i >= 0 {
				t.Errorf("log line %d contains %s: …%s…", n, nd.label, excerpt(masker.Replace(line), masker.Replace(line[:i]), 80))
				break
			}
		}
	}
}

type secretForm struct{ name, text string }

// secretForms are the ways a secret can reach a log line.
func secretForms(s string) []secretForm {
	forms := []secretForm{{"raw", s}}
	add := func(name, v string) {
		for _, f := range forms {
			if f.text == v {
				return
			}
		}
		forms = append(forms, secretForm{name, v})
	}
	add("query-escaped", url.QueryEscape(s))
	add("path-escaped", url.PathEscape(s))
	add("base64", base64.StdEncoding.EncodeToString([]byte(s)))
	add("base64url", base64.RawURLEncoding.EncodeToString([]byte(s)))
	if b, err := json.Marshal(s); err == nil {
		add("json-escaped", string(b[1:len(b)-1]))
	}
	return forms
}

func maskAll[T any](items []T, text func(T) string) *strings.Replacer {
	var pairs []string
	for _, it := range items {
		pairs = append(pairs, text(it), "<REDACTED>")
	}
	return strings.NewReplacer(pairs...)
}

// excerpt returns up to width characters of the masked line around the
// position where the masked prefix ends.
func excerpt(masked, maskedPrefix string, width int) string {
	at := len(maskedPrefix)
	from, to := max(0, at-width/2), min(len(masked), at+width/2)
	return masked[from:to]
}

// basicCredential is the Authorization: Basic value a client sends for id
// and secret (RFC 6749 §2.3.1); scan logs for it too.
func basicCredential(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
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

// get performs a GET with optional header name/value pairs and returns
// status, body and headers.
func get(t *testing.T, url string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

// testClient bounds every request so a hung gateway fails the test
// instead of the whole run.
var testClient = &http.Client{Timeout: 30 * time.Second}

func do(t *testing.T, req *http.Request) (int, []byte, http.Header) {
	t.Helper()
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, buf.Bytes(), resp.Header
}
