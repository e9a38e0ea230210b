package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary runs the demo's main when asked, so the busy-port check
// is exercised as `make run` exercises it: a process that must exit.
func TestMain(m *testing.M) {
	if os.Getenv("OAUTHGW_DEMO_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Issue 13 item 9: a port held by someone else stops the demo before it
// starts anything, naming the port; no ready file is written.
func TestBusyPortStopsTheDemo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(os.Args[0], "-as", freeAddr(t), "-upstream", busy.Addr().String(),
		"-gateway", "http://"+freeAddr(t), "-ready-file", ready, "-hint", "pick another DEMO_PORT")
	cmd.Env = append(os.Environ(), "OAUTHGW_DEMO_RUN_MAIN=1")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the demo did not stop")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("exit %v, want status 3; output:\n%s", err, out)
	}
	if msg := string(out); !strings.Contains(msg, "port "+busy.Addr().String()+" is in use (wanted for the demo upstream)") ||
		!strings.Contains(msg, "pick another DEMO_PORT") {
		t.Fatalf("message does not name the busy port and the way out:\n%s", out)
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Fatal("the ready file was written: make run would have started Caddy")
	}
}
