package caddymodule

import (
	"context"
	"maps"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// placeholderKey is a placeholder's name: {http.auth.user.id} →
// http.auth.user.id.
func placeholderKey(p string) string {
	return strings.TrimSuffix(strings.TrimPrefix(p, "{"), "}")
}

// requestHeaderOf returns the canonical header name a replacer key of
// the form http.request.header.<name> reads, else "".
func requestHeaderOf(key string) string {
	name, ok := strings.CutPrefix(key, "http.request.header.")
	if !ok || name == "" {
		return ""
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// placeholderReader evaluates placeholder for a request, trimmed, the
// way the gateway core asks for a principal or a subject token. A request
// header placeholder ({http.request.header.X-User}) is read straight from
// the request, as Caddy's replacer would, without its lookup (a
// measurable share of the per-user hot path); anything else goes through
// the request's replacer.
func placeholderReader(placeholder string) func(*http.Request) string {
	key := placeholderKey(placeholder)
	if header := requestHeaderOf(key); header != "" {
		return func(r *http.Request) string {
			switch vals := r.Header[header]; len(vals) {
			case 0:
				return ""
			case 1:
				return strings.TrimSpace(vals[0])
			default:
				return strings.TrimSpace(strings.Join(vals, ","))
			}
		}
	}
	return func(r *http.Request) string { return replacerValue(r, key) }
}

// replacerValue is key's value in the request's replacer, trimmed.
func replacerValue(r *http.Request, key string) string {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return ""
	}
	v, _ := repl.GetString(key)
	return strings.TrimSpace(v)
}

// withFreshVars gives a replayed request its own copy of Caddy's request
// variables. The first attempt's transport may still be dialing in a
// goroutine of its own, reading the variables (reverse_proxy's dialer
// looks up a proxy variable), while the replay's reverse_proxy writes
// them: without the copy that is a data race inside Caddy.
func withFreshVars(r *http.Request) *http.Request {
	vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if !ok {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, maps.Clone(vars)))
}
