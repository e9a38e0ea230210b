package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 19, findings 3 and 6: a flow completes only at the handler that
// began it, and users of distinct identity fronts never share a
// credential.

// perUserRoute is a route block: oauth_gateway with one credential per
// user (principal given) for up, answering its flow under prefix.
func (e *env) perUserRoute(prefix string, up *fakeoauth.Upstream, principal string, extra ...string) string {
	return fmt.Sprintf(`	route %s/* {
		oauth_gateway {
			resource       %s
			grant          authorization_code
			redirect_uri   http://127.0.0.1:{PORT}%s/.oauth/callback
			principal      %s
			client_id      %s
			client_secret  {env.TEST_CLIENT_SECRET}
			discovery_allow_hosts 127.0.0.1
			insecure_allow_http
%s
		}
		reverse_proxy %s
	}
`, prefix, up.Resource(), prefix, principal, e.clientID, indent(extra), strings.TrimPrefix(up.URL(), "http://"))
}

// secondUpstream is another resource on the same authorization server.
func (e *env) secondUpstream(t *testing.T) *fakeoauth.Upstream {
	t.Helper()
	up, err := fakeoauth.StartUpstream(fakeoauth.UpstreamOptions{AuthServer: e.as})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

// A code begun for resource A, delivered to handler B's callback (one
// authorization server, one gateway, two handlers): B refuses it and
// leaves it to A, whose own callback then completes it. B used to take
// the state, and A's callback found it gone.
func TestCallbackCompletesOnlyItsOwnHandlersFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	upB := e.secondUpstream(t)
	site := basicAuthBlock(t) + e.perUserRoute("/a", e.up, "{http.auth.user.id}") + e.perUserRoute("/b", upB, "{http.auth.user.id}")
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})

	resp, body := step(t, http.MethodGet, c.URL("/a/.oauth/start"), "alice", nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start at A: %d %s", resp.StatusCode, body)
	}
	callback, err := url.Parse(consent(t, resp.Header.Get("Location"), "alice"))
	if err != nil || callback.Path != "/a/.oauth/callback" {
		t.Fatalf("callback %v %v", callback, err)
	}
	crossed := c.URL("/b/.oauth/callback?" + callback.RawQuery)
	resp, body = step(t, http.MethodGet, crossed, "alice", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "another application") {
		t.Fatalf("A's code at B's callback: %d %s", resp.StatusCode, body)
	}
	if n := e.as.TokenRequests(""); n != 0 {
		t.Fatalf("B's callback exchanged A's code (%d token requests)", n)
	}
	if resp, body := step(t, http.MethodGet, c.URL("/b/echo"), "alice", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("B serves alice after the crossed callback: %d %s", resp.StatusCode, body)
	}
	resp, body = step(t, http.MethodGet, callback.String(), "alice", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected") {
		t.Fatalf("A's own callback after the crossed one: %d %s", resp.StatusCode, body)
	}
	if resp, body := step(t, http.MethodGet, c.URL("/a/echo"), "alice", nil); resp.StatusCode != http.StatusOK || decodeEcho(t, []byte(body)).Subject != "alice" {
		t.Fatalf("A after its callback: %d %s", resp.StatusCode, body)
	}
}

// `principal` alice from basic auth under /a and `X-User: alice` under
// /b are different fronts: consent at one does not serve the other, and
// disconnecting at one leaves the other. Handlers that should share say
// so with credential_group.
func TestIdentityFrontsDoNotShareCredentials(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("credential_group=%v", shared), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
			var extra []string
			if shared {
				extra = []string{"credential_group team"}
			}
			site := basicAuthBlock(t, "/b/*") + e.perUserRoute("/a", e.up, "{http.auth.user.id}", extra...) +
				e.perUserRoute("/b", e.up, "{http.request.header.X-User}", extra...)
			c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
			if resp, body := connect(t, c.URL("/a/.oauth/start"), "alice"); resp.StatusCode != http.StatusOK {
				t.Fatalf("consent at /a: %d %s", resp.StatusCode, body)
			}
			resp, body := step(t, http.MethodGet, c.URL("/b/echo"), "", nil, "X-User", "alice")
			switch {
			case shared && (resp.StatusCode != http.StatusOK || decodeEcho(t, []byte(body)).Subject != "alice"):
				t.Fatalf("with a shared group, /b does not serve alice: %d %s", resp.StatusCode, body)
			case !shared && resp.StatusCode != http.StatusUnauthorized:
				t.Fatalf("another front's alice was served with basic-auth alice's credential: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// Issue 19 finding 3 / SEP-2468: the authorization response's iss (RFC
// 9207) must equal the flow's issuer exactly when present, and is
// required when the server advertises
// authorization_response_iss_parameter_supported. A refused response
// exchanges no code.
func TestAuthorizationResponseIss(t *testing.T) {
	t.Parallel()
	for _, advertised := range []bool{true, false} {
		t.Run(fmt.Sprintf("advertised=%v", advertised), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
			e.as.SetResponseIss(true, "", advertised)
			c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
			issuer := e.as.Issuer()
			cases := []struct {
				name   string
				send   bool
				iss    string // "" sends the issuer
				accept bool
			}{
				{"present", true, "", true},
				{"absent", false, "", !advertised},
				{"wrong issuer", true, "http://127.0.0.1:1/other", false},
				{"trailing slash", true, issuer + "/", false},
				{"scheme case", true, strings.Replace(issuer, "http://", "HTTP://", 1), false},
			}
			for _, tc := range cases {
				e.as.SetResponseIss(tc.send, tc.iss, advertised)
				before := e.as.TokenRequests("")
				resp, body := connect(t, c.URL("/mcp/.oauth/start"), "alice")
				accepted := resp.StatusCode == http.StatusOK && strings.Contains(body, "Connected")
				if accepted != tc.accept {
					t.Errorf("%s: %d %s, want accepted=%v", tc.name, resp.StatusCode, body, tc.accept)
				}
				if !tc.accept && (resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "mismatch")) {
					t.Errorf("%s: refused with %d %s, want 400 naming the mismatch", tc.name, resp.StatusCode, body)
				}
				if exchanged := e.as.TokenRequests("") > before; exchanged != tc.accept {
					t.Errorf("%s: code exchanged=%v, want %v", tc.name, exchanged, tc.accept)
				}
			}
		})
	}
}
