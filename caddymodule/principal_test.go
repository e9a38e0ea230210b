package caddymodule

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The principal read straight from a request header must be what Caddy's
// replacer gives for the same placeholder, whatever the request carries.
func TestPrincipalHeaderMatchesReplacer(t *testing.T) {
	for _, placeholder := range []string{"{http.request.header.X-User}", "{http.request.header.x-user}"} {
		if h := requestHeaderOf(placeholderKey(placeholder)); h != "X-User" {
			t.Fatalf("%s: header %q", placeholder, h)
		}
		fast := placeholderReader(placeholder)
		key := placeholderKey(placeholder)
		for _, values := range [][]string{nil, {""}, {"alice"}, {"  bob "}, {"a", "b"}, {" a", "b "}} {
			r := httptest.NewRequest("GET", "/", nil)
			for _, v := range values {
				r.Header.Add("X-User", v)
			}
			repl := caddyhttp.NewTestReplacer(r)
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			if got, want := fast(r), replacerValue(r, key); got != want {
				t.Errorf("%s %q: header %q, replacer %q", placeholder, values, got, want)
			}
		}
	}
	for _, key := range []string{"http.auth.user.id", "http.request.header.", "http.request.uri.query.user"} {
		if h := requestHeaderOf(key); h != "" {
			t.Errorf("%s read as header %q", key, h)
		}
	}
}
