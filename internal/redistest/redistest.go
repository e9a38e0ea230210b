// Package redistest starts real redis-server processes for tests: a
// standalone server, a three-master Cluster, or a master with a Sentinel,
// each on free loopback ports in a temporary directory, stopped when the
// test ends.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	s := &Server{t: t, Port: FreePort(t), dir: t.TempDir()}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
	s.args = append([]string{"--port", fmt.Sprint(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no"}, extra...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(binary(s.t), s.args...)
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	if err := waitPing(s.Addr, 10*time.Second); err != nil {
		s.t.Fatalf("redis-server on %s: %v", s.Addr, err)
	}
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
	if strings.HasPrefix(line, "$") { // bulk string
		body, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		var rest strings.Builder
		rest.WriteString(strings.TrimRight(body, "\r\n"))
		// Multi-line bulk replies (CLUSTER INFO) continue until the length.
		var n int
		fmt.Sscanf(line[1:], "%d", &n)
		for rest.Len() < n-2 {
			more, err := r.ReadString('\n')
			if err != nil {
				break
			}
			rest.WriteString("\n" + strings.TrimRight(more, "\r\n"))
		}
		return rest.String(), nil
	}
	return line, nil
}

func waitPing(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
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

// FreePort returns a free loopback TCP port (a Cluster node also needs
// port+10000 for its bus: callers of StartCluster get ports checked for that).
func FreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port+10000 > 65535 {
			continue
		}
		if bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
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
	port := FreePort(t)
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 2000\n",
		port, dir, name, master.Port, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel = &Server{t: t, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, args: []string{conf, "--sentinel"}}
	sentinel.start()
	t.Cleanup(sentinel.Stop)
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
