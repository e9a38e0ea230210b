// Package integration runs a real Caddy, built from this checkout with the
// gateway module, between a Go HTTP client and real HTTP servers standing
// in for authorization servers and upstreams (internal/fakeoauth).
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// caddyBin is the Caddy binary under test.
var caddyBin string

// TestMain finds the Caddy binary: $OAUTHGW_CADDY (set by `make -f
// xcaddy.mk test`, which builds it first), or builds it here the way
// xcaddy.mk does.
func TestMain(m *testing.M) {
	caddyBin = os.Getenv("OAUTHGW_CADDY")
	if caddyBin == "" {
		start := time.Now()
		bin, err := buildCaddy()
		if err != nil {
			fmt.Fprintln(os.Stderr, "building caddy:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "built %s in %s\n", bin, time.Since(start).Round(time.Second))
		caddyBin = bin
	}
	if _, err := os.Stat(caddyBin); err != nil {
		fmt.Fprintln(os.Stderr, "caddy binary:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func buildCaddy() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("make", "-f", "xcaddy.mk", "build")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "caddy"), nil
}
