package discovery

import (
	"fmt"
	"net/url"
	"strings"
)

// ProtectedResourceMetadataURLs returns the RFC 9728 §3.1 well-known URLs
// for resource, in the order MCP (2025-11-25) tries them: the
// path-inserted one, then the root one. A resource without a path has
// only the root URL. A query stays after the path.
func ProtectedResourceMetadataURLs(resource string) ([]string, error) {
	u, err := parseHTTPURL(resource)
	if err != nil {
		return nil, fmt.Errorf("discovery: resource: %w", err)
	}
	root := originString(u) + "/.well-known/oauth-protected-resource"
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		return []string{root}, nil
	}
	inserted := root + path
	if u.RawQuery != "" {
		inserted += "?" + u.RawQuery
	}
	return []string{inserted, root}, nil
}

// AuthorizationServerMetadataURLs returns the metadata URLs for issuer in
// the order to try them (RFC 8414 §3.1, OpenID Connect Discovery §4):
// with a path, RFC 8414 path-inserted, OIDC path-inserted, OIDC
// path-appended; without a path, RFC 8414 then OIDC.
func AuthorizationServerMetadataURLs(issuer string) ([]string, error) {
	u, err := parseHTTPURL(issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: issuer: %w", err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("discovery: issuer %q must not have a query or fragment (RFC 8414 §2)", issuer)
	}
	origin := originString(u)
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		return []string{
			origin + "/.well-known/oauth-authorization-server",
			origin + "/.well-known/openid-configuration",
		}, nil
	}
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + "/.well-known/openid-configuration" + path,
		origin + path + "/.well-known/openid-configuration",
	}, nil
}

// originString is scheme://host[:port] of u as it appears in a URL (an
// IPv6 zone escaped as %25).
func originString(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

func parseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q must not contain userinfo", raw)
	}
	return u, nil
}
