package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
)

// listen serves a protected resource metadata document naming the
// listener's own origin on addr, and counts requests.
func listen(t *testing.T, addr string) (port string, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// Loopback (IPv4 and IPv6) is part of the test environment: a
		// machine without it fails the test rather than skipping it.
		t.Fatalf("cannot listen on %s: %v", addr, err)
	}
	hits = new(atomic.Int64)
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"resource":"http://%s","authorization_servers":["https://as.example"]}`, r.Host)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return port, hits
}

func TestZonedIPv6LoopbackBlocked(t *testing.T) {
	port, hits := listen(t, "[::1]:0")
	c := NewClient(Options{AllowHTTP: true})
	for _, host := range []string{"[::1%25lo]", "[::1]", "[::1%25eth0]", "[::1%251]", "[::ffff:127.0.0.1]"} {
		u := "http://" + host + ":" + port
		_, _, err := c.ProtectedResource(context.Background(), u, nil)
		if !errors.Is(err, ErrBlockedDestination) {
			t.Errorf("%s: err = %v, want ErrBlockedDestination", u, err)
		}
		_, _, err = c.ProtectedResource(context.Background(), "https://r.example", []string{u + "/meta"})
		if !errors.Is(err, ErrBlockedDestination) {
			t.Errorf("challenge URL %s: err = %v, want ErrBlockedDestination", u, err)
		}
		resp, err := c.HTTPClient().Get(u + "/token")
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrBlockedDestination) {
			t.Errorf("HTTPClient %s: err = %v, want ErrBlockedDestination", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("listener on [::1] reached %d times", n)
	}
	// Control: the zoned URL does reach the listener when allowed, so
	// the refusals above are the guard's.
	allowed := NewClient(Options{AllowHTTP: true, AllowHosts: []string{"[::1]:" + port}})
	if _, _, err := allowed.ProtectedResource(context.Background(), "http://[::1%25lo]:"+port, nil); errors.Is(err, ErrBlockedDestination) {
		t.Fatalf("allowed [::1%%25lo]: %v", err)
	}
	if hits.Load() == 0 {
		t.Fatal("allowed request did not reach the listener")
	}
}

func TestZonedAddressesArePrivate(t *testing.T) {
	for _, a := range []string{"fe80::1%eth0", "::1%lo", "fd00::1%2", "::ffff:127.0.0.1%lo", "ff02::1%eth0"} {
		if !IsPrivateAddr(netip.MustParseAddr(a)) {
			t.Errorf("IsPrivateAddr(%s) = false", a)
		}
	}
	for _, h := range []string{"fe80::1%eth0", "::1%lo", "[::1%lo]", "[fe80::1%25eth0]", "[::1]", "LOCALHOST.", "a.localhost"} {
		if !IsPrivateHost(h) {
			t.Errorf("IsPrivateHost(%s) = false", h)
		}
	}
	for _, h := range []string{"2606:4700::1%eth0", "example.com", "8.8.8.8"} {
		if IsPrivateHost(h) {
			t.Errorf("IsPrivateHost(%s) = true", h)
		}
	}
}

func TestAllowHostsByPort(t *testing.T) {
	portA, hitsA := listen(t, "127.0.0.1:0")
	portB, hitsB := listen(t, "127.0.0.1:0")
	fetch := func(c *Client, host, port string) error {
		_, _, err := c.ProtectedResource(context.Background(), "http://"+host+":"+port, nil)
		return err
	}

	c := NewClient(Options{AllowHTTP: true, AllowHosts: []string{"127.0.0.1:" + portA}})
	if err := fetch(c, "127.0.0.1", portA); err != nil {
		t.Fatalf("allowed port A: %v", err)
	}
	if err := fetch(c, "127.0.0.1", portB); !errors.Is(err, ErrBlockedDestination) {
		t.Fatalf("port B: err = %v, want ErrBlockedDestination", err)
	}
	if hitsB.Load() != 0 {
		t.Fatalf("port B reached %d times", hitsB.Load())
	}
	// Other private destinations stay closed.
	if resp, err := c.HTTPClient().Get("http://169.254.169.254/latest/meta-data/"); !errors.Is(err, ErrBlockedDestination) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("metadata address: err = %v", err)
	}

	c = NewClient(Options{AllowHTTP: true, AllowHosts: []string{"127.0.0.1"}})
	if err := fetch(c, "127.0.0.1", portA); err != nil {
		t.Fatalf("any port, A: %v", err)
	}
	if err := fetch(c, "127.0.0.1", portB); err != nil {
		t.Fatalf("any port, B: %v", err)
	}

	// An entry matches the host as written in the URL, not what it
	// resolves to.
	c = NewClient(Options{AllowHTTP: true, AllowHosts: []string{"LocalHost:" + portA}})
	if err := fetch(c, "localhost", portA); err != nil {
		t.Fatalf("localhost:A: %v", err)
	}
	for _, hp := range [][2]string{{"127.0.0.1", portA}, {"localhost", portB}} {
		if err := fetch(c, hp[0], hp[1]); !errors.Is(err, ErrBlockedDestination) {
			t.Fatalf("%s:%s with localhost:A allowed: err = %v", hp[0], hp[1], err)
		}
	}
	if hitsA.Load() == 0 {
		t.Fatal("port A never reached")
	}
}

func TestAllowHostEntries(t *testing.T) {
	tests := []struct {
		entry, host, port string
		want              bool
	}{
		{"r.example", "R.Example", "443", true},
		{"r.example", "r.example.", "8443", true},
		{"r.example:8443", "r.example", "8443", true},
		{"r.example:8443", "r.example", "443", false},
		{"r.example:443", "evil.example", "443", false},
		{"[::1]:8443", "::1", "8443", true},
		{"[::1]:8443", "::1%lo", "8443", true},
		{"[::1]:8443", "::1", "8444", false},
		{"::1", "::1%eth0", "1", true},
		{"[::1]", "0:0:0:0:0:0:0:1", "80", true},
		{"[fe80::1%eth0]:80", "fe80::1%eth1", "80", true},
		{"127.0.0.1:0443", "127.0.0.1", "443", true},
		{"127.0.0.1:x", "127.0.0.1", "80", false},
		{"127.0.0.1:", "127.0.0.1", "80", false},
		{"127.0.0.1:70000", "127.0.0.1", "80", false},
		{"", "", "80", false},
	}
	for _, tt := range tests {
		var entries []allowHost
		if a, err := parseAllowHost(tt.entry); err == nil {
			entries = append(entries, a)
		}
		if got := allowedHost(entries, tt.host, tt.port); got != tt.want {
			t.Errorf("entry %q, dial %s port %s: %v, want %v", tt.entry, tt.host, tt.port, got, tt.want)
		}
		if (CheckAllowHost(tt.entry) == nil) != (len(entries) == 1) {
			t.Errorf("CheckAllowHost(%q) disagrees with the parser", tt.entry)
		}
	}
}

func TestHostPortOf(t *testing.T) {
	tests := map[string]string{
		"https://R.Example/mcp":          "r.example:443",
		"http://r.example":               "r.example:80",
		"https://r.example:8443/x?y=1":   "r.example:8443",
		"http://[::1]:8080/":             "[::1]:8080",
		"https://[FE80::1%25eth0]/":      "[fe80::1]:443",
		"http://127.0.0.1:9000/.well-kn": "127.0.0.1:9000",
		"http://127.0.0.1:0080/":         "127.0.0.1:80",
		"https://r.example.:8443":        "r.example:8443",
	}
	for in, want := range tests {
		got, err := HostPortOf(in)
		if err != nil || got != want {
			t.Errorf("HostPortOf(%q) = %q, %v; want %q", in, got, err, want)
		}
		// The result is an entry allowing exactly that origin.
		host, port, _ := net.SplitHostPort(got)
		a, err := parseAllowHost(got)
		if err != nil || a.host != normalizeHost(host) || strconv.Itoa(a.port) != port {
			t.Errorf("HostPortOf(%q) = %q does not parse back: %+v %v", in, got, a, err)
		}
	}
	for _, bad := range []string{"", "/relative", "ftp://x/", "https://", "r.example:443", "https://u:p@r.example/", "http://r.example:0/", "http://r.example:65536/", "http://../"} {
		if got, err := HostPortOf(bad); err == nil {
			t.Errorf("HostPortOf(%q) = %q, want an error", bad, got)
		}
	}
}

// HostPortOf's result, used as an AllowHosts entry, allows the URL it
// came from, and only that port.
func FuzzHostPortOf(f *testing.F) {
	for _, s := range []string{"https://r.example/mcp", "http://[::1%25lo]:8080/", "https://[FE80::1%25eth0]/", "http://127.0.0.1:0443", "https://R.EXAMPLE.:8443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		hp, err := HostPortOf(raw)
		if err != nil {
			return
		}
		a, err := parseAllowHost(hp)
		if err != nil {
			t.Fatalf("HostPortOf(%q) = %q, not an entry: %v", raw, hp, err)
		}
		u, _ := parseHTTPURL(raw)
		entries := []allowHost{a}
		if !allowedHost(entries, u.Hostname(), portOf(u)) {
			t.Fatalf("entry %q does not allow %q", hp, raw)
		}
		if a.port != 0 && allowedHost(entries, u.Hostname(), strconv.Itoa(a.port%65535+1)) {
			t.Fatalf("entry %q allows another port", hp)
		}
	})
}
