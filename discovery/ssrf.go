package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBlockedDestination is wrapped by errors for requests to addresses the
// gateway will not contact (RFC 9728 §7.7).
var ErrBlockedDestination = errors.New("discovery: destination address is not allowed")

// blockedPrefixes are the IPv4 ranges (and the IPv6 ranges within global
// unicast) a discovery request must not reach unless allowed: every IANA
// special-purpose range that is not globally reachable (RFC 6890 and the
// IPv4 and IPv6 Special-Purpose Address Registries), plus multicast and
// deprecated transition prefixes. Addresses that embed an IPv4 address
// (IPv4-mapped, NAT64 64:ff9b::/96) are judged by that address; IPv6
// outside global unicast (2000::/3) is refused as a whole (see
// IsPrivateAddr).
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local (cloud metadata)
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo 2001::/32 included)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4 (deprecated): relays reach any IPv4 address
	netip.MustParsePrefix("3fff::/20"),       // documentation
}

var (
	// globalUnicast6 is the only IPv6 space with globally reachable
	// unicast addresses; outside it are ::/128, ::1, IPv4-compatible
	// ::/96, 100::/64, 64:ff9b:1::/48, fc00::/7, fe80::/10, fec0::/10,
	// ff00::/8 and reserved space, all refused.
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	// nat64 is the well-known NAT64 prefix (RFC 6052): the destination
	// is the IPv4 address in the last 32 bits. The local-use prefix
	// 64:ff9b:1::/48 (RFC 8215) is refused: its form is site-specific.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// IsPrivateAddr reports whether ip is in a blocked range: not globally
// reachable, or an address the gateway has no business contacting. An
// IPv6 zone ("fe80::1%eth0") is ignored: the address is judged without
// it. An IPv4 address embedded in IPv6 (::ffff:a.b.c.d, 64:ff9b::a.b.c.d)
// is judged as that IPv4 address.
func IsPrivateAddr(ip netip.Addr) bool {
	// netip.Prefix.Contains is false for any zoned address, so the zone
	// must go before the checks.
	ip = ip.WithZone("").Unmap()
	if !ip.IsValid() {
		return true
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	} else if ip.Is6() && !globalUnicast6.Contains(ip) {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// IsPrivateHost reports whether host is a literal private address (with
// or without brackets or an IPv6 zone) or a name that conventionally is
// one ("localhost").
func IsPrivateHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return IsPrivateAddr(ip)
	}
	return false
}

// normalizeHost is the form hosts are compared in: lower case, without
// brackets, IPv6 zone or trailing dot; literal IPs in canonical form.
func normalizeHost(h string) string {
	// Repeated until nothing changes, so that normalizing a normalized
	// host (an entry made by HostPortOf) is a no-op.
	for {
		n := strings.ToLower(strings.TrimPrefix(strings.TrimSuffix(h, "]"), "["))
		n, _, _ = strings.Cut(n, "%")
		n = strings.TrimRight(n, ".")
		if ip, err := netip.ParseAddr(n); err == nil {
			n = ip.Unmap().String()
		}
		if n == h {
			return n
		}
		h = n
	}
}

// allowHost is one parsed Options.AllowHosts entry; port 0 is any port.
type allowHost struct {
	host string
	port int
}

// parseAllowHost parses "host", "host:port", "[v6]" or "[v6]:port".
func parseAllowHost(entry string) (allowHost, error) {
	entry = strings.TrimSpace(entry)
	host, port, err := net.SplitHostPort(entry)
	if err != nil {
		// No port: the whole entry is the host (an IPv6 literal may
		// come without brackets).
		if strings.HasSuffix(entry, ":") {
			return allowHost{}, fmt.Errorf("discovery: allowed host %q: empty port", entry)
		}
		host, port = entry, ""
	} else if port == "" {
		return allowHost{}, fmt.Errorf("discovery: allowed host %q: empty port", entry)
	}
	a := allowHost{host: normalizeHost(host)}
	if a.host == "" {
		return allowHost{}, fmt.Errorf("discovery: allowed host %q: empty host", entry)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return allowHost{}, fmt.Errorf("discovery: allowed host %q: bad port", entry)
		}
		a.port = n
	}
	return a, nil
}

// CheckAllowHost reports whether entry is a well-formed Options.AllowHosts
// entry ("host", "host:port", "[::1]" or "[::1]:8443"). Malformed entries
// are ignored by the client (they allow nothing).
func CheckAllowHost(entry string) error {
	_, err := parseAllowHost(entry)
	return err
}

// HostPortOf returns "host:port" for an absolute http(s) URL: the host
// lower-cased without IPv6 zone or trailing dot (IPv6 bracketed, literal
// IPs in canonical form), the port in decimal (1-65535) with the scheme's
// default filled in (https 443, http 80). It is the
// Options.AllowHosts entry that allows exactly that URL's origin.
func HostPortOf(rawURL string) (string, error) {
	u, err := parseHTTPURL(rawURL)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	host := normalizeHost(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("discovery: %q has no host", rawURL)
	}
	if !validHost(host) {
		return "", fmt.Errorf("discovery: %q has a malformed host", rawURL)
	}
	port, err := strconv.Atoi(portOf(u))
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("discovery: %q has a bad port", rawURL)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// validHost accepts an IP literal or a name of letters, digits, '-', '_'
// and '.': what an allow entry can be matched against.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// allowed reports whether the dialed host and port (as in the URL) match
// an entry.
func allowedHost(entries []allowHost, host, port string) bool {
	if len(entries) == 0 {
		return false
	}
	h := normalizeHost(host)
	p, err := strconv.Atoi(port)
	if err != nil {
		p = -1
	}
	for _, a := range entries {
		if a.host == h && (a.port == 0 || a.port == p) {
			return true
		}
	}
	return false
}

// guardedDialer returns a DialContext that refuses private addresses
// unless allowPrivate, or the host and port being dialed match an entry
// of allowHosts. The check runs on the resolved address at connect time,
// so DNS rebinding cannot slip past it.
func guardedDialer(timeout time.Duration, allowPrivate bool, allowHosts []string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var entries []allowHost
	for _, e := range allowHosts {
		if a, err := parseAllowHost(e); err == nil {
			entries = append(entries, a)
		}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		allowed := allowPrivate || allowedHost(entries, host, port)
		dd := *d
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			if allowed {
				return nil
			}
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrBlockedDestination, address)
			}
			if IsPrivateAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s resolves to %s", ErrBlockedDestination, host, ap.Addr())
			}
			return nil
		}
		return dd.DialContext(ctx, network, addr)
	}
}
