package normalize

import (
	"fmt"
	"strings"
	"time"
)

// Class says what a failure means for the credential.
type Class int

const (
	// Transient failures (5xx, 429, timeouts, HTML or other non-OAuth
	// bodies): retry with backoff and keep the credential.
	Transient Class = iota
	// Permanent failures: the grant or client was rejected
	// (invalid_grant, invalid_client). Retrying the same credential
	// cannot help.
	Permanent
	// Rejected requests were wrong (invalid_scope, invalid_target,
	// invalid_request, unsupported_grant_type, unauthorized_client: the
	// client may not use this grant) but the credential may be fine: a
	// configuration change fixes them.
	Rejected
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Error is a failure in RFC 6749 §5.2 form.
type Error struct {
	// Code is a standard code after aliasing: an RFC 6749 §5.2 code,
	// RFC 8707's invalid_target, or server_error /
	// temporarily_unavailable for failures that were not OAuth errors.
	Code string
	// Description is human-readable text from the server (or about a
	// non-OAuth answer). It never contains token or secret values from
	// the request.
	Description string
	URI         string
	// Status is the HTTP status the server answered with.
	Status int
	// VendorCode is the original code when it was not standard.
	VendorCode string
	Class      Class
	// Extensions are other members of the error object (Entra's
	// error_codes, trace ids), kept for logs and clients.
	Extensions map[string]any
	// RetryAfter is the server's Retry-After on 429/503, if any.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.VendorCode != "" {
		fmt.Fprintf(&b, " (%s)", e.VendorCode)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ", HTTP %d", e.Status)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	return b.String()
}

// Standard token endpoint error codes (RFC 6749 §5.2, RFC 8707 §2).
var standardCodes = map[string]Class{
	"invalid_request":         Rejected,
	"invalid_client":          Permanent,
	"invalid_grant":           Permanent,
	"unauthorized_client":     Rejected,
	"unsupported_grant_type":  Rejected,
	"invalid_scope":           Rejected,
	"invalid_target":          Rejected,
	"server_error":            Transient,
	"temporarily_unavailable": Transient,
	// Device flow (RFC 8628 §3.5) codes that mean "ask again later".
	"slow_down":             Transient,
	"authorization_pending": Transient,
}

// IsStandard reports whether code is a standard token endpoint error code.
func IsStandard(code string) bool {
	_, ok := standardCodes[code]
	return ok
}

// Aliases map vendor error codes (matched case-insensitively) to standard
// codes.
type Aliases map[string]string

// builtinAliases are vendor codes seen in the wild (PROTOCOL.md §6). Only
// unambiguous ones are mapped: a code that could mean either a bad client
// or a bad grant is left alone and classified by status.
var builtinAliases = Aliases{
	// Refresh token rejected: the grant is dead.
	"invalid_refresh_token": "invalid_grant", // Slack
	"expired_refresh_token": "invalid_grant",
	"refresh_token_expired": "invalid_grant",
	"refresh_token_revoked": "invalid_grant",
	"token_expired":         "invalid_grant", // at the token endpoint, the presented grant
	"token_revoked":         "invalid_grant",
	"bad_refresh_token":     "invalid_grant", // GitHub
	"bad_verification_code": "invalid_grant", // GitHub
	"expired_token":         "invalid_grant", // RFC 8628 device code expired
	// Client authentication failed.
	"incorrect_client_credentials": "invalid_client", // GitHub
	"invalid_client_id":            "invalid_client",
	"invalid_client_secret":        "invalid_client",
	"bad_client_secret":            "invalid_client",
	"unauthorized_client_id":       "invalid_client",
}

// DefaultAliases returns a copy of the built-in alias table.
func DefaultAliases() Aliases {
	out := make(Aliases, len(builtinAliases))
	for k, v := range builtinAliases {
		out[k] = v
	}
	return out
}

// canonical maps a server's code to a standard one. It returns the
// standard code and, when it differs, the original as the vendor code.
func canonical(code string, extra Aliases) (std, vendor string) {
	if IsStandard(code) {
		return code, ""
	}
	lower := strings.ToLower(code)
	if IsStandard(lower) {
		return lower, code
	}
	if v, ok := extra[code]; ok {
		return v, code
	}
	if v, ok := extra[lower]; ok {
		return v, code
	}
	if v, ok := builtinAliases[lower]; ok {
		return v, code
	}
	return "", code
}

// mentionsDeadRefreshToken reports whether a description says the
// refresh token itself is bad ("refresh_token is invalid", "Refresh token
// expired", "Invalid refresh token"), which some servers report as
// invalid_request or unauthorized_client.
func mentionsDeadRefreshToken(desc string) bool {
	d := strings.ToLower(desc)
	if !strings.Contains(d, "refresh token") && !strings.Contains(d, "refresh_token") && !strings.Contains(d, "refreshtoken") {
		return false
	}
	for _, w := range []string{"invalid", "expired", "revoked", "not found", "malformed", "reuse", "already used", "unknown"} {
		if strings.Contains(d, w) {
			return true
		}
	}
	return false
}
