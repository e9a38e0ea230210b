// Package tokenstore keeps OAuth credentials: the in-memory token cache, the
// persistent record of each credential (refresh token, generation, pinned
// issuer), the backends that hold those records (memory, Caddy storage,
// Redis) and the refresh protocol that coordinates them.
//
// It knows nothing of HTTP handlers. Token requests are made through the
// Requester interface, which the caller implements with a real OAuth client.
//
// The invariants it exists for (see ../shared/seeds 000 and 001):
//
//   - a refresh token returned by the authorization server is persisted
//     before anything uses it, and kept in memory (and retried) when the
//     write fails, so at no instant are there zero usable copies;
//   - a refresh token is never presented twice: refresh happens under a
//     per-credential lock, after re-reading the store, and writes are
//     compare-and-swap on a generation number;
//   - the hot path (a cached, fresh token) takes no lock shared between
//     credentials and makes no backend round trip.
package tokenstore
