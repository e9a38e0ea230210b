package gateway

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
)

// issuerTrust decides whether a discovered authorization server may
// receive this credential's shared secret (a client secret or a refresh
// token). Discovery is trust on first use: whoever answers for the
// resource's metadata names the issuer. A secret therefore goes only to an
// issuer that shares the resource's registrable domain (per the public
// suffix list: mcp.example.com and auth.example.com do, example.com and
// attacker.net do not; IP literals and single-label hosts must be the
// same host), or that the configuration names (`issuer`, `trusted_issuers`).
// Credentials without a reusable secret discover freely.
type issuerTrust struct {
	resourceHost  string
	trusted       []string
	carriesSecret bool
}

func newIssuerTrust(resource string, trusted []string, carriesSecret bool) issuerTrust {
	host := ""
	if u, err := url.Parse(resource); err == nil {
		host = strings.ToLower(u.Hostname())
	}
	return issuerTrust{resourceHost: host, trusted: trusted, carriesSecret: carriesSecret}
}

func (t issuerTrust) check(issuer string) error {
	if !t.carriesSecret {
		return nil
	}
	for _, ti := range t.trusted {
		if discovery.IssuerMatches(ti, issuer) {
			return nil
		}
	}
	u, err := url.Parse(issuer)
	if err == nil && sameRegistrableDomain(t.resourceHost, strings.ToLower(u.Hostname())) {
		return nil
	}
	return &untrustedError{kind: untrustedIssuer, msg: fmt.Sprintf("discovered authorization server %s is on another domain than the resource; "+
		"the gateway sends a client secret or refresh token only to an issuer on the resource's domain or named by `issuer` or `trusted_issuers`", issuer)}
}

// sameRegistrableDomain reports whether a and b share a registrable domain
// (eTLD+1). Hosts without one (IP literals, localhost, single labels) must
// be equal.
func sameRegistrableDomain(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	if net.ParseIP(strings.Trim(a, "[]")) != nil || net.ParseIP(strings.Trim(b, "[]")) != nil {
		return false // the public suffix rules would pair 10.0.0.1 with 127.0.0.1
	}
	da, errA := publicsuffix.EffectiveTLDPlusOne(a)
	db, errB := publicsuffix.EffectiveTLDPlusOne(b)
	return errA == nil && errB == nil && da == db
}
