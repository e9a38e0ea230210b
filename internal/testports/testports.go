// Package testports hands out TCP ports for servers that tests start in
// other processes (Caddy, redis-server), which must be told a port
// instead of binding port 0 themselves.
//
// Asking the kernel for a free port (listen on 127.0.0.1:0, close, use the
// number) has two faults, both seen in CI:
//
//   - Two picks in one process can return the same port. Caddy binds every
//     listener with SO_REUSEPORT, so a Caddy given one port for its site
//     (bound on [::]) and its admin API (bound on 127.0.0.1) starts without
//     error and 127.0.0.1 requests reach the admin API; two Caddys on one
//     port share it just as silently. A bind error cannot be relied on.
//   - Kernel-chosen ports come from the ephemeral range, which the kernel
//     keeps handing out (to port-0 listeners and to every outgoing
//     connection) between the pick and the server binding the port.
//
// So ports come from a process-wide allocator instead:
//
//   - It never returns a port twice in one process (nor a port it returned
//     as a companion, see Hold), whoever asks: integration's Caddys,
//     redistest's servers and toxiproxy listeners share it.
//   - It takes ports from outside the kernel's ephemeral range, so that
//     nothing the kernel hands out can take a port after the pick, or
//     while a server is stopped to be restarted on the same port.
//   - Each test process starts at a random point in that range, so
//     concurrent test processes (other checkouts on the same machine)
//     rarely walk the same ports.
//   - A port is only returned once it could be bound on 127.0.0.1 and on
//     the wildcard address (dual-stack [::] where there is IPv6), the
//     addresses Caddy and redis bind, so a port busy for one address family
//     only is skipped. Hold keeps the wildcard listener open until Release,
//     which callers call just before starting the server, so that other
//     processes' allocators skip it in the meantime.
//
// What remains (another process binding the port between Release and the
// server's bind) is rare and shows up as "address already in use": the
// callers start the server again on fresh ports when they see it.
package testports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

var (
	mu     sync.Mutex
	lo, hi int                        // ports come from [lo, hi)
	next   int                        // where the next search starts
	given  = map[int]bool{}           // every port returned, never returned again
	held   = map[int][]net.Listener{} // listeners kept per port returned by Hold
)

// Hold returns a port, held by a listener until Release, that no other
// call in this process returns. For each offset in also, port+offset is
// checked, held and reserved with it (a Redis Cluster node binds its bus on
// port+10000).
func Hold(also ...int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if hi == 0 {
		lo, hi = portRange()
		next = lo + rand.IntN(hi-lo)
	}
	for range hi - lo {
		p := next
		if next++; next == hi {
			next = lo
		}
		if lns, ok := reserve(p, also); ok {
			held[p] = lns
			return p, nil
		}
	}
	return 0, fmt.Errorf("testports: no free port left in [%d, %d)", lo, hi)
}

// Pick is Hold without the hold: for a caller that binds the port at once.
func Pick(also ...int) (int, error) {
	p, err := Hold(also...)
	Release(p)
	return p, err
}

// Release closes the listeners Hold keeps for port, so a server can bind
// it; the port is still never returned again. Releasing a port twice, or
// one not held, does nothing.
func Release(port int) {
	mu.Lock()
	lns := held[port]
	delete(held, port)
	mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// reserve checks and holds p and p+offset for each offset; on success
// they are all marked given.
func reserve(p int, also []int) ([]net.Listener, bool) {
	ports := []int{p}
	for _, o := range also {
		ports = append(ports, p+o)
	}
	var lns []net.Listener
	for _, q := range ports {
		var ln net.Listener
		ok := q <= 65535 && !given[q]
		if ok {
			ln, ok = bindable(q)
		}
		if !ok {
			for _, l := range lns {
				l.Close()
			}
			return nil, false
		}
		lns = append(lns, ln)
	}
	for _, q := range ports {
		given[q] = true
	}
	return lns, true
}

// bindable reports whether port can be bound on 127.0.0.1 and on the
// wildcard address, and returns the wildcard listener, still open. (Both
// cannot be held at once: the wildcard conflicts with 127.0.0.1.)
func bindable(port int) (net.Listener, bool) {
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, false
	}
	ln.Close()
	ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, false
	}
	return ln, true
}

// portRange is the larger stretch of [10000, 65536) on either side of the
// kernel's ephemeral port range (below 10000 are many services' default
// ports). Where the ephemeral range leaves too little, ports are taken
// from all of [10000, 65536): the bind checks still apply.
func portRange() (lo, hi int) {
	const floor, minSpan = 10000, 4096
	eLo, eHi := 49152, 65535 // IANA's ephemeral range: BSDs, macOS, Windows
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if _, err := fmt.Sscan(string(b), &eLo, &eHi); err != nil {
			eLo, eHi = 32768, 60999 // Linux's default
		}
	}
	below, above := eLo-floor, 65535-eHi
	switch {
	case below >= above && below >= minSpan:
		return floor, eLo
	case above >= minSpan:
		return eHi + 1, 65536
	}
	return floor, 65536
}
