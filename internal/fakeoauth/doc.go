// Package fakeoauth runs real HTTP servers that stand in for an OAuth
// authorization server and a protected resource (an MCP server or API),
// with the quirks of real providers (PROTOCOL.md §6) switchable per test:
// refresh-token rotation with family revocation on reuse, vendor error
// bodies, failure injection, missing or bare challenges.
//
// The AuthServer also plays the interactive side of an MCP-style
// deployment: an authorization endpoint whose HTML login page has one
// button per user (id "user-alice", "user-bob", "deny"), the
// authorization_code grant with PKCE S256 and RFC 9207 iss, public
// clients, RFC 7591 dynamic registration (option Registration) and
// Client ID Metadata Documents (option CIMD). Tokens from the code flow
// carry the user as subject (SubjectOf, and the Upstream's echo).
//
// Clients may also authenticate with RFC 7523 client assertions:
// private_key_jwt (AddKeyClient with a JWKS URL, AddKeyClientKeys) and
// client_secret_jwt (AddSecretJWTClient), once listed in AuthMethods. The
// server verifies them itself with go-jose (aud must be the issuer, jti
// is single-use) and logs each one (AssertionLog).
//
// The integration tests put a real Caddy between a client and these
// servers; the demo command (cmd/oauthgw-demo) runs them for newcomers.
// Everything is safe for concurrent use and counts what it sees so tests
// can assert on it.
package fakeoauth
