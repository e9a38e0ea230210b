// Package fakeoauth runs real HTTP servers that stand in for an OAuth
// authorization server and a protected resource (an MCP server or API),
// with the quirks of real providers (PROTOCOL.md §6) switchable per test:
// refresh-token rotation with family revocation on reuse, vendor error
// bodies, failure injection, missing or bare challenges.
//
// The integration tests put a real Caddy between a client and these
// servers; the demo command (cmd/oauthgw-demo) runs them for newcomers.
// Everything is safe for concurrent use and counts what it sees so tests
// can assert on it.
package fakeoauth
