// Package discovery finds where tokens for a protected resource come from:
// RFC 9728 protected resource metadata, then RFC 8414 / OpenID Connect
// authorization server metadata. Every document is validated and the
// result fails closed: a document whose `resource` or `issuer` does not
// match what was asked for is never used, a document naming http
// endpoints is refused unless http is allowed, and no request goes to a
// private, loopback, link-local or other not globally reachable address
// unless the configuration allows it (RFC 9728 §7.7).
//
// It knows nothing of storage or Caddy.
package discovery
