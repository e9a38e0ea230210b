package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// caddyProc is the Caddy process of one scenario run.
type caddyProc struct {
	cmd       *exec.Cmd
	exited    chan struct{}
	origin    string // http://127.0.0.1:port
	adminURL  string
	logPath   string
	artifacts string
}

const startTimeout = 10 * time.Second

// siteURL is the scenario's server URL with Caddy's origin: what the MCP
// client talks to.
func (c *caddyProc) siteURL(s *scenario) string {
	u := *s.upstream
	u.Scheme, u.Host = "http", strings.TrimPrefix(c.origin, "http://")
	return u.String()
}

func caddyBinary() string {
	if v := os.Getenv("OAUTHGW_CADDY"); v != "" {
		return v
	}
	// bin/caddy of the checkout this program runs from (go run or bin/).
	if exe, err := os.Executable(); err == nil {
		for dir := filepath.Dir(exe); dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				if c := filepath.Join(dir, "bin", "caddy"); fileExists(c) {
					return c
				}
				break
			}
		}
	}
	return "caddy"
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before Caddy binds it; startCaddy then tries other ports.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// caddyfile is the whole configuration: loopback only, no HTTPS, memory
// storage, debug logs; one site with the gateway in front of the
// scenario's server.
func caddyfile(s *scenario, p *profile, port, admin int) (string, error) {
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tskip_install_trust\n\tpersist_config off\n", admin)
	b.WriteString("\tlog {\n\t\tlevel DEBUG\n\t}\n\toauth_gateway {\n\t\tstorage memory\n\t}\n}\n\n")
	fmt.Fprintf(&b, "%s {\n\tbind 127.0.0.1\n\tlog\n", origin)
	if p.perUser {
		hash, err := bcrypt.GenerateFromPassword([]byte(p.password), bcrypt.MinCost)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\tbasic_auth {\n\t\t%s %s\n\t}\n", p.user, hash)
	}
	fmt.Fprintf(&b, "\toauth_gateway {\n\t\tresource %s\n", quote(s.serverURL))
	for _, d := range p.directives {
		fmt.Fprintf(&b, "\t\t%s\n", strings.ReplaceAll(d, "{SITE}", origin))
	}
	b.WriteString("\t}\n")
	// A remote MCP server sees its own host name, and every response
	// (SSE included) streams.
	fmt.Fprintf(&b, "\treverse_proxy %s://%s {\n\t\theader_up Host {upstream_hostport}\n\t\tflush_interval -1\n\t}\n}\n",
		s.upstream.Scheme, s.upstream.Host)
	return b.String(), nil
}

func startCaddy(ctx context.Context, s *scenario, p *profile, work, artifacts string) (*caddyProc, error) {
	bin := caddyBinary()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		admin, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg, err := caddyfile(s, p, port, admin)
		if err != nil {
			return nil, err
		}
		cfgPath := filepath.Join(work, "Caddyfile")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		if artifacts != "" {
			_ = os.WriteFile(filepath.Join(artifacts, "Caddyfile"), []byte(cfg), 0o644)
		}
		c := &caddyProc{
			origin:    fmt.Sprintf("http://127.0.0.1:%d", port),
			adminURL:  fmt.Sprintf("http://127.0.0.1:%d", admin),
			logPath:   filepath.Join(work, "caddy.log"),
			artifacts: artifacts,
		}
		if err := c.launch(ctx, bin, cfgPath, work, p.env); err != nil {
			lastErr = err
			tail := c.logTail(20)
			c.stop()
			if strings.Contains(tail, "address already in use") && attempt < 3 {
				log.Printf("a port was taken before caddy bound it; trying others")
				continue
			}
			return nil, fmt.Errorf("%v\n%s", err, tail)
		}
		return c, nil
	}
	return nil, lastErr
}

func (c *caddyProc) launch(ctx context.Context, bin, cfgPath, work string, env []string) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	data := filepath.Join(work, "data")
	cmd.Env = append(os.Environ(), "HOME="+data, "XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+data)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", bin, err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(c.exited) }()

	probe := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("caddy exited during startup (%s)", cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := probe.Get(c.adminURL + "/config/"); err == nil {
			resp.Body.Close()
			if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.origin, "http://"), time.Second); err == nil {
				conn.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy not ready after %s", startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends Caddy (interrupt, then kill after 3 s) and keeps its log.
func (c *caddyProc) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.exited:
			case <-time.After(3 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.exited
			}
		}
	}
	if c.artifacts != "" {
		if b, err := os.ReadFile(c.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(c.artifacts, "caddy.log"), b, 0o644)
		}
	}
}

func (c *caddyProc) logTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
