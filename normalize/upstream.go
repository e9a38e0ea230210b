package normalize

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
)

// UpstreamVerdict says what a protected resource's response means for the
// token that was sent (RFC 6750 §3.1).
type UpstreamVerdict struct {
	// InvalidToken: the token was rejected; refresh and replay.
	InvalidToken bool
	// InsufficientScope: the token lacks scope; Scope lists what the
	// challenge asked for (space-separated, authoritative).
	InsufficientScope bool
	Scope             string
	// Code is the standard code recognised ("invalid_token",
	// "insufficient_scope") and VendorCode the upstream's own, if any.
	Code       string
	VendorCode string
}

// PresetSlack treats Slack Web API bodies (HTTP 200 with "ok":false) as
// token errors.
const PresetSlack = "slack"

// Upstream inspects a protected resource's response: its status, header
// and a small body (the caller passes at most 64 KiB, and only when it
// held the response back). presets name opt-in vendor behaviours.
func Upstream(status int, header http.Header, body []byte, presets []string) UpstreamVerdict {
	chs := challenge.Parse(header.Values("Www-Authenticate"))
	code, scope := bearerError(chs)
	switch status {
	case http.StatusUnauthorized:
		v := UpstreamVerdict{InvalidToken: true, Code: "invalid_token"}
		if code == "" {
			v.VendorCode = vendorInvalidToken(body)
		}
		return v
	case http.StatusForbidden:
		if code == "insufficient_scope" {
			return UpstreamVerdict{InsufficientScope: true, Scope: normalizeScope(scope), Code: code}
		}
		if f := jsonObject(body); f != nil && f["error"] == "insufficient_scope" {
			s, _ := f["scope"].(string)
			return UpstreamVerdict{InsufficientScope: true, Scope: normalizeScope(s), Code: "insufficient_scope"}
		}
	case http.StatusOK:
		for _, p := range presets {
			if p == PresetSlack {
				if v, ok := slackVerdict(body); ok {
					return v
				}
			}
		}
	}
	return UpstreamVerdict{}
}

// bearerError returns the error and scope of the first Bearer or DPoP
// challenge carrying an error.
func bearerError(chs []challenge.Challenge) (code, scope string) {
	for _, c := range chs {
		if c.Scheme != "bearer" && c.Scheme != "dpop" {
			continue
		}
		if e := c.Param("error"); e != "" {
			return e, c.Param("scope")
		}
	}
	return "", ""
}

// vendorInvalidToken names the vendor shape of a 401 body, for logs:
// Dropbox `{"error":{".tag":"expired_access_token"}}`, Salesforce
// `[{"errorCode":"INVALID_SESSION_ID"}]`, a JSON-RPC error.
func vendorInvalidToken(body []byte) string {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return ""
	}
	if b[0] == '[' {
		var arr []map[string]any
		if json.Unmarshal(b, &arr) == nil {
			for _, e := range arr {
				if c, ok := e["errorCode"].(string); ok {
					return c
				}
			}
		}
		return ""
	}
	f := jsonObject(b)
	if f == nil {
		return ""
	}
	switch e := f["error"].(type) {
	case map[string]any:
		if tag, ok := e[".tag"].(string); ok {
			return tag
		}
		if _, ok := f["jsonrpc"]; ok {
			return "jsonrpc_error"
		}
	case string:
		return e
	}
	return ""
}

// slackVerdict reads Slack's `{"ok":false,"error":...}`.
func slackVerdict(body []byte) (UpstreamVerdict, bool) {
	f := jsonObject(body)
	if f == nil || f["ok"] != false {
		return UpstreamVerdict{}, false
	}
	code, _ := f["error"].(string)
	switch code {
	case "token_expired", "invalid_auth", "not_authed", "token_revoked":
		return UpstreamVerdict{InvalidToken: true, Code: "invalid_token", VendorCode: code}, true
	case "missing_scope":
		needed, _ := f["needed"].(string)
		return UpstreamVerdict{InsufficientScope: true, Scope: normalizeScope(needed), Code: "insufficient_scope", VendorCode: code}, true
	}
	return UpstreamVerdict{}, false
}

// normalizeScope turns Slack's comma-separated lists into RFC 6749 §3.3
// space-separated form.
func normalizeScope(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }), " ")
}

func jsonObject(body []byte) map[string]any {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}
