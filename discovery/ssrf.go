package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrBlockedDestination is wrapped by errors for requests to addresses the
// gateway will not contact (RFC 9728 §7.7).
var ErrBlockedDestination = errors.New("discovery: destination address is not allowed")

// blockedPrefixes are ranges a discovery request must not reach unless
// allowed: loopback, private (RFC 1918, unique local), link-local,
// CGNAT, unspecified, multicast, and IPv4-mapped forms of them.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// IsPrivateAddr reports whether ip is in a blocked range.
func IsPrivateAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// IsPrivateHost reports whether host is a literal private address or a
// name that conventionally is one ("localhost").
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

// guardedDialer returns a DialContext that refuses private addresses
// unless allowPrivate, or the host being dialed is in allowHosts. The
// check runs on the resolved address at connect time, so DNS rebinding
// cannot slip past it.
func guardedDialer(timeout time.Duration, allowPrivate bool, allowHosts []string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		allowed := allowPrivate || slices.Contains(allowHosts, strings.ToLower(host))
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
