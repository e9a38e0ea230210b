package benchflow

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/testports"
)

// CPUTime is a process's user+system CPU time from /proc (Linux); 0
// elsewhere.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// TrivialUpstream serves {"ok":true} to everything on a loopback port
// and returns its address: the upstream of throughput comparisons. Like
// FreePort it ends the (benchmark) program when it cannot listen.
func TrivialUpstream() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String()
}

// FreePort is a loopback port free at the time of the call that no other
// call in this process returns: the benchmarks pick several ports for one
// Caddy at once (internal/testports says why port 0 is not enough).
func FreePort() int {
	port, err := testports.Pick()
	if err != nil {
		log.Fatal(err)
	}
	return port
}
