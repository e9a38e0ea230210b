package fakeoauth

import (
	"fmt"
	"net/http"
	"strings"
)

// deny answers 401 (invalid or missing token) or 403 (insufficient
// scope) in the configured style. hadToken tells a missing token, which
// RFC 6750 §3.1 answers without an error code, from a bad one.
func (u *Upstream) deny(w http.ResponseWriter, status int, scope string, hadToken bool) {
	u.mu.Lock()
	if status == http.StatusUnauthorized {
		u.unauthorized++
	} else {
		u.forbidden++
	}
	u.mu.Unlock()

	if u.opts.SlackErrors {
		body := map[string]any{"ok": false, "error": "token_expired"}
		switch {
		case status == http.StatusForbidden:
			body = map[string]any{"ok": false, "error": "missing_scope", "needed": strings.ReplaceAll(scope, " ", ",")}
		case !hadToken:
			body["error"] = "invalid_auth"
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintln(w, mustJSON(body))
		return
	}

	md := u.challengeMetadataURL()
	if status == http.StatusForbidden {
		// RFC 6750 §3.1 and MCP 2025-11-25 step-up: the challenge names
		// the scopes the request needs.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope="%s", resource_metadata="%s"`, scope, md))
		writeJSON(w, status, map[string]string{"error": "insufficient_scope", "error_description": "this request needs scope " + scope})
		return
	}
	switch u.opts.Challenge {
	case ChallengeMetadata:
		if hadToken {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", resource_metadata="%s"`, md))
		} else {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer resource_metadata="%s"`, md))
		}
	case ChallengeBearer:
		if hadToken {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer`)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Unauthorized"}}` + "\n"))
}

func (u *Upstream) challengeMetadataURL() string {
	if u.opts.ChallengeMetadataURL != "" {
		return u.opts.ChallengeMetadataURL
	}
	return u.MetadataURL()
}
