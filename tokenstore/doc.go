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
//
// # What encryption_key protects, and what it cannot
//
// With encryption_key set (AEADCodec), the store reads only what the
// gateway sealed itself. Every record (credential, pending authorization,
// client registration) is sealed with its kind, its storage key and its
// generation as additional data, and the generation is the one the backend
// keeps beside the record (the Redis hash field, the envelope of the file
// backend, the memory backend's entry). So someone with write access to
// the store (Redis, the data directory) but not the key cannot plant a
// record: a plaintext one, one sealed for another key or kind, or an older
// sealed value copied over a newer generation is unreadable
// (ErrUnreadable), the credential fails closed, and the record is left for
// an operator, never overwritten or deleted. A process that holds a newer
// generation in memory than the store (a backup or an older append-only
// file restored) writes its newer pair back, as it does when the store
// comes back empty.
//
// What the AEAD alone cannot detect is a whole older copy put back (the
// value together with the generation it was sealed for: a restored backup,
// DUMP and RESTORE of an older hash, an older file): it is a record the
// gateway did seal, and nothing in the store says a newer one existed. It
// is caught only while some instance holds the newer pair in memory (that
// instance writes it back on its next refresh of that credential). Once
// none does (every instance restarted, or the credential evicted from the
// cache), the older record is used: its access token until it expires,
// then its refresh token, which is spent if the server rotates refresh
// tokens: a server that detects reuse rejects it (the credential goes dead
// and needs a new seed or authorization, and the server may revoke the
// whole grant); one that does not may accept it. Likewise a pending
// authorization put back after its callback can be completed once more
// until it expires (with its state, which the store does not hold, and a
// code the server still accepts), and a registration put back makes the
// gateway use its own older client at the same server. Deleting a record
// cannot be told from a store that lost it. Keeping the store writable only by the
// gateway is what prevents these; the key keeps them from becoming a
// planted credential or a disclosed secret.
package tokenstore
