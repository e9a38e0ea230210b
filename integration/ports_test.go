package integration

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
	"github.com/oauthgw/caddy-oauth-gateway/internal/testports"
)

// The port allocator behind freePort and redistest.FreePort (no Caddy
// needed): 2,000 ports asked for at once by concurrent callers, as
// parallel tests do, are all different, held until released, and then
// bindable on 127.0.0.1 and on the wildcard address (Caddy binds its admin
// API on the one and sites on the other).
func TestPortsAreUniqueAndBindable(t *testing.T) {
	// Serial (no t.Parallel): it holds 2,000 ports (4,000 listeners) at
	// once and binds each after its release.
	const n, workers = 2000, 8
	ports := make(chan int, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers {
				p, err := testports.Hold()
				if err != nil {
					t.Error(err)
					return
				}
				ports <- p
			}
		})
	}
	wg.Wait()
	close(ports)

	// redistest's ports come from the same allocator, each with its
	// Cluster bus port (+10000), which nobody else may get either.
	seen := map[int]string{}
	for range 50 {
		p := redistest.FreePort(t)
		for _, q := range []int{p, p + 10000} {
			if by, dup := seen[q]; dup {
				t.Errorf("port %d handed out twice (redistest, and %s before)", q, by)
			}
			seen[q] = "redistest"
		}
	}
	for p := range ports {
		if by, dup := seen[p]; dup {
			t.Errorf("port %d handed out twice (Hold, and %s before)", p, by)
		}
		seen[p] = "Hold"
		if ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			t.Errorf("port %d is not held", p)
		}
		testports.Release(p)
		for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf(":%d", p)} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("port %d cannot be bound after its release: %v", p, err)
				continue
			}
			ln.Close()
		}
	}
	if got := len(seen); got != n+100 {
		t.Errorf("%d distinct ports, want %d", got, n+100)
	}
}

// startCaddy retries on other ports only when Caddy says one of the ports
// it was given is in use; these are the lines Caddy 2.11 logs then.
func TestPortInUseReadsCaddysLog(t *testing.T) {
	t.Parallel()
	for log, want := range map[string]int{
		`{"level":"error","ts":1.6,"msg":"loading initial config: loading new config: http app module: start: listening on :23456: listen tcp :23456: bind: address already in use"}`:                 23456,
		`{"level":"error","ts":1.6,"msg":"loading initial config: loading new config: starting caddy administration endpoint: listen tcp 127.0.0.1:23457: bind: address already in use"}`:             23457,
		`{"level":"error","ts":1.6,"msg":"loading initial config: loading new config: http app module: start: listening on :23456: listen tcp :23456: bind: permission denied"}`:                      0,
		`{"level":"error","ts":1.6,"msg":"loading initial config: loading new config: provision http: module oauth_gateway: dial tcp 127.0.0.1:6379: connect: address already in use"}` + "\n" + `{}`: 0,
	} {
		if got := portInUse(log); got != want {
			t.Errorf("portInUse(%s) = %d, want %d", log, got, want)
		}
	}
}
