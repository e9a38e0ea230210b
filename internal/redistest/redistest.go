// Package redistest starts real redis-server processes for tests: a
// standalone server, a three-master Cluster, or a master with a Sentinel,
// each on free loopback ports in a temporary directory, stopped when the
// test ends.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/testports"
)

// Server is a running redis-server.
type Server struct {
	t    testing.TB
	Port int
	Addr string
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// binary finds redis-server; tests fail (not skip) without it: .ci/run
// installs it, and a skipped test proves nothing.
func binary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed (apt-get install redis-server; .ci/run does this)")
	}
	return path
}

// Start runs a standalone redis-server with extra arguments.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	return startOnFreePort(t, func(port int) *Server {
		return &Server{t: t, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir,
			args: append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", dir, "--protected-mode", "no"}, extra...)}
	})
}

// startOnFreePort starts the server build makes for a FreePort. The port
// can still be taken between its release and redis binding it (rarely: see
// internal/testports); then the server starts again on another port.
func startOnFreePort(t testing.TB, build func(port int) *Server) *Server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s := build(FreePort(t))
		err := s.launch()
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		s.Stop()
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatalf("redis-server on %s: %v", s.Addr, err)
		}
		t.Logf("redis-server on %s: %v; retrying on another port", s.Addr, err)
	}
}

// errAddrInUse: redis-server exited because a port it binds (its own or
// a Cluster node's bus port) was taken.
var errAddrInUse = errors.New("port already in use")

func (s *Server) start() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatalf("redis-server on %s: %v", s.Addr, err)
	}
}

// launch runs redis-server and waits until it answers.
func (s *Server) launch() error {
	// FreePort holds the ports against other processes' pickers until now.
	testports.Release(s.Port)
	s.cmd = exec.Command(binary(s.t), s.args...)
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	err = waitPing(s.Addr, s.done, 10*time.Second)
	if err != nil {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "bind: Address already in use") {
			return fmt.Errorf("%w: %v", errAddrInUse, err)
		}
	}
	return err
}

// Stop kills the server (it keeps no data: a restart starts empty unless
// persistence was enabled).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Do sends one command and returns the first reply line.
func Do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "$") { // bulk string: $<length>, then length bytes and CRLF
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return line, err // $-1: no value
		}
		// Read exactly the length: a multi-line reply (CLUSTER INFO) has
		// CRLFs inside, and reading lines until it seemed complete waited
		// for the 5 s deadline on every call.
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		return strings.ReplaceAll(strings.TrimRight(string(body[:n]), "\r\n"), "\r\n", "\n"), nil
	}
	return line, nil
}

// waitPing waits for PONG from addr until d has passed or the server
// exits (done closed).
func waitPing(addr string, done <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		select {
		case <-done:
			return errors.New("redis-server exited during startup")
		default:
		}
		reply, err := Do(addr, "PING")
		if err == nil && reply == "+PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG after %s (last: %q %v)", d, reply, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a free loopback TCP port that no other FreePort (or
// integration freePort) call in this process returns, held until the
// server on it is launched or the test ends (internal/testports says
// why). A Cluster node also needs port+10000 for its bus: that port is
// checked, held and reserved with it.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := testports.Hold(10000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testports.Release(port) })
	return port
}

// StartCluster runs three masters with no replicas and waits until the
// cluster says ok on every node. It returns their addresses.
func StartCluster(t testing.TB) []*Server {
	t.Helper()
	var nodes []*Server
	var addrs []string
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		n := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}
	// Assign the 16384 slots in three ranges and introduce the nodes.
	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for i, n := range nodes {
		args := []string{"CLUSTER", "ADDSLOTSRANGE", fmt.Sprint(ranges[i][0]), fmt.Sprint(ranges[i][1])}
		if reply, err := Do(n.Addr, args...); err != nil || reply != "+OK" {
			t.Fatalf("ADDSLOTSRANGE on %s: %q %v", n.Addr, reply, err)
		}
	}
	for _, n := range nodes[1:] {
		if reply, err := Do(nodes[0].Addr, "CLUSTER", "MEET", "127.0.0.1", fmt.Sprint(n.Port)); err != nil || reply != "+OK" {
			t.Fatalf("CLUSTER MEET %s: %q %v", n.Addr, reply, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			info, err := Do(n.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %q %v", n.Addr, info, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	_ = addrs
	return nodes
}

// StartSentinel runs a master and one sentinel monitoring it as name. It
// returns the master and the sentinel.
func StartSentinel(t testing.TB, name string) (master, sentinel *Server) {
	t.Helper()
	master = Start(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	sentinel = startOnFreePort(t, func(port int) *Server {
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 2000\n",
			port, dir, name, master.Port, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return &Server{t: t, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, args: []string{conf, "--sentinel"}}
	})
	// Wait until the sentinel knows the master.
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := Do(sentinel.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
		if err == nil && !strings.HasPrefix(reply, "-") && !strings.HasPrefix(reply, "*-1") {
			return master, sentinel
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not know %s: %q %v", name, reply, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
