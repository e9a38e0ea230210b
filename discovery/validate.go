package discovery

import (
	"net/url"
	"strings"
)

// ResourceMatches reports whether a protected resource metadata document
// claiming documentResource may be used for requested (RFC 9728 §3.3,
// §7.3). The interop rule: same origin (scheme, host case-insensitively,
// port with defaults filled in) and the document's path a prefix of the
// requested path on a segment boundary. A document fetched from the root
// well-known URL (fromRoot) may name the origin itself.
func ResourceMatches(requested, documentResource string, fromRoot bool) bool {
	req, err1 := url.Parse(requested)
	doc, err2 := url.Parse(documentResource)
	if err1 != nil || err2 != nil || !sameOrigin(req, doc) {
		return false
	}
	docPath := strings.TrimSuffix(doc.EscapedPath(), "/")
	reqPath := strings.TrimSuffix(req.EscapedPath(), "/")
	if docPath == "" {
		// The origin as a resource: fine for the root document, or when
		// the requested resource is the origin too.
		return fromRoot || reqPath == ""
	}
	return reqPath == docPath || strings.HasPrefix(reqPath, docPath+"/")
}

// IssuerMatches reports whether metadata claiming got may be used for the
// issuer expected (RFC 8414 §3.3: identical). The one tolerance is a
// trailing slash on an otherwise empty path.
func IssuerMatches(expected, got string) bool {
	if expected == got {
		return true
	}
	e, err1 := url.Parse(expected)
	g, err2 := url.Parse(got)
	if err1 != nil || err2 != nil {
		return false
	}
	ep, gp := e.EscapedPath(), g.EscapedPath()
	return e.Scheme == g.Scheme && e.Host == g.Host && e.RawQuery == g.RawQuery &&
		(ep == "" || ep == "/") && (gp == "" || gp == "/")
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// originOf is scheme://host[:port] of u, for same-origin comparisons.
func originOf(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}
