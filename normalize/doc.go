// Package normalize is the one component that turns the OAuth error
// bodies real servers send into RFC 6749 §5.2 / RFC 6750 §3 form, and
// classifies each failure as permanent (the credential is bad), transient
// (retry with backoff) or rejected (the request was wrong).
//
// It is used on every path: token endpoint responses the gateway receives
// (TokenEndpoint), upstream responses reaching clients (Upstream), and the
// oauth_normalize handler in front of a proxied authorization server
// (Rewrite). See PROTOCOL.md §4 and §6 for the cases it absorbs.
package normalize
