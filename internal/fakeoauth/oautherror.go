package fakeoauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Vendor error codes for the standard ones (PROTOCOL.md §6).
var (
	slackCodes  = map[string]string{"invalid_grant": "invalid_refresh_token", "invalid_client": "bad_client_secret"}
	githubCodes = map[string]string{"invalid_grant": "bad_refresh_token", "invalid_client": "incorrect_client_credentials"}
)

// writeToken writes a token endpoint answer in the configured dialect:
// RFC 6749 (§5.1 success, §5.2 error), Slack's or GitHub's.
func (a *AuthServer) writeToken(w http.ResponseWriter, r *http.Request, reply tokenReply) {
	for k, v := range reply.header {
		w.Header()[k] = v
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	body := reply.fields
	status := reply.status
	if reply.code != "" {
		body = map[string]any{"error": reply.code}
		if reply.desc != "" {
			body["error_description"] = reply.desc
		}
	}
	switch {
	case a.opts.SlackErrors:
		if reply.code != "" {
			body = map[string]any{"ok": false, "error": vendorCode(slackCodes, reply.code)}
		} else {
			body["ok"] = true
		}
		status = http.StatusOK // Slack says everything with 200
	case a.opts.GitHubStyle:
		if reply.code != "" {
			body["error"] = vendorCode(githubCodes, reply.code)
			status = http.StatusOK
		}
		if !strings.Contains(r.Header.Get("Accept"), "application/json") {
			writeForm(w, status, body)
			return
		}
	}
	writeJSON(w, status, body)
}

func vendorCode(table map[string]string, code string) string {
	if v, ok := table[code]; ok {
		return v
	}
	return code
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeForm answers application/x-www-form-urlencoded, as GitHub does
// for clients that do not ask for JSON.
func writeForm(w http.ResponseWriter, status int, body map[string]any) {
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	v := url.Values{}
	for _, k := range keys {
		v.Set(k, fmt.Sprint(body[k]))
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(v.Encode()))
}
