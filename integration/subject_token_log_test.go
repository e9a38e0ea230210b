package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Caddy writes a request to its logs as the client sent it: its server
// clones the request before any handler runs, for the access log (the
// site's `log`) and for the error log (a handler's error, such as
// reverse_proxy's 502, at ERROR), and redacts only the Authorization,
// Proxy-Authorization, Cookie and Set-Cookie headers (caddyhttp/server.go,
// internal/logmarshalers.go). The gateway removes the subject token's
// header before proxying, which cannot take it out of those lines. These
// tests run a real exchange and a 502 through Caddy with its access log on
// and scan the whole log (DEBUG) for the subject token and every other
// secret.

// subjectTokenWarning is how the gateway's provisioning warning starts.
const subjectTokenWarning = "subject_token: Caddy's access log and error log record this part of the request"

// unreachable is an address nothing listens on: reverse_proxy to it
// answers 502 and Caddy logs the error with the request.
func unreachable(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// exchangeRoute is oauth_gateway (grant token_exchange, the subject token
// from header) in a route where /down/* goes to an unreachable upstream.
func (e *env) exchangeRoute(t *testing.T, header string) string {
	return fmt.Sprintf(`	route {
		oauth_gateway {
			resource       %s
			token_endpoint %s
			client_id      %s
			client_secret  {env.TEST_CLIENT_SECRET}
			grant          token_exchange
			subject_token  {http.request.header.%s}
			insecure_allow_http
		}
		reverse_proxy /down/* %s
		reverse_proxy %s
	}`, e.up.Resource(), e.as.TokenURL(), e.clientID, header, unreachable(t), strings.TrimPrefix(e.up.URL(), "http://"))
}

// exchangeAndFail sends each subject token in header: a request that is
// exchanged and served (200, the upstream never seeing the header) and
// one whose upstream is down (502, logged by Caddy as an error).
func exchangeAndFail(t *testing.T, c *caddyProc, header string, tokens map[string]string) {
	t.Helper()
	for token, user := range tokens {
		value := token
		if header == "Authorization" {
			value = "Bearer " + token
		}
		status, body, _ := get(t, c.URL("/echo"), header, value)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", user, status, body)
		}
		// The upstream gets the gateway's Authorization, never the
		// subject token's header.
		echo := decodeEcho(t, body)
		forwarded := header != "Authorization" && slices.Contains(echo.Headers, header)
		if echo.Subject != user || forwarded || strings.Contains(echo.Authorization, token) {
			t.Fatalf("%s: upstream saw subject %q, headers %v", user, echo.Subject, echo.Headers)
		}
		if status, body, _ = get(t, c.URL("/down/echo"), header, value); status != http.StatusBadGateway {
			t.Fatalf("%s, upstream down: %d %s", user, status, body)
		}
	}
}

// filteredCaddyfile is a whole Caddyfile: the harness's global options
// with the default log at DEBUG filtering globalField (none if empty),
// and one site whose access log filters siteField (a plain `log` if
// empty), with body inside.
func filteredCaddyfile(globalField, siteField, body string) string {
	filter := func(indent, field string) string {
		return indent + "format filter {\n" + indent + "\t" + field + " delete\n" + indent + "}\n"
	}
	global := "\tlog {\n\t\tlevel DEBUG\n"
	if globalField != "" {
		global += filter("\t\t", globalField)
	}
	global += "\t}\n"
	site := "\tlog\n"
	if siteField != "" {
		site = "\tlog {\n" + filter("\t\t", siteField) + "\t}\n"
	}
	return "{\n\tadmin 127.0.0.1:{ADMIN}\n\tauto_https off\n\tskip_install_trust\n\tpersist_config off\n" + global +
		"}\n\nhttp://127.0.0.1:{PORT} {\n" + site + body + "\n}\n"
}

// linesOf returns the log lines of the loggers whose name starts with
// prefix.
func linesOf(logs, prefix string) string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"logger":"`+prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// The finding, shown with a real Caddy: a subject token the client sends
// in a header Caddy does not redact (here X-Subject-Token) is written to
// the access log and, when a handler fails (upstream down: 502), to the
// error log at ERROR, whatever the gateway removes before proxying. The
// gateway warns about it at provisioning, naming the header and the fix.
func TestSubjectTokenInCustomHeaderIsLoggedByCaddy(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	token := "st_" + randomHex(16)
	e.as.AddSubjectToken(token, "carol")
	c := startCaddy(t, e.exchangeRoute(t, "X-Subject-Token"), caddyOptions{Env: e.secretEnv()})
	exchangeAndFail(t, c, "X-Subject-Token", map[string]string{token: "carol"})

	logs := c.Logs()
	access, errs := linesOf(logs, "http.log.access"), linesOf(logs, "http.log.error")
	if access == "" || errs == "" {
		t.Fatalf("no access log or error log lines:\n%s", tail(logs, 20))
	}
	if !strings.Contains(access, token) {
		t.Errorf("the access log does not show the subject token: Caddy redacts X-Subject-Token after all?\n%s", access)
	}
	if !strings.Contains(errs, token) || !strings.Contains(errs, `"level":"error"`) {
		t.Errorf("the 502's error line does not show the subject token:\n%s", errs)
	}
	if debugLines(logs, `"level":"warn"`, subjectTokenWarning, `"logged":"request header X-Subject-Token"`,
		`request>headers>X-Subject-Token delete`) != 1 {
		t.Errorf("no provisioning warning naming X-Subject-Token and its log filter:\n%s", tail(logs, 30))
	}
}

// The site's access log filter alone does not cover Caddy's error lines,
// which go to the default log: the README filters both.
func TestSubjectTokenSiteLogFilterAloneMissesErrorLines(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	token := "st_" + randomHex(16)
	e.as.AddSubjectToken(token, "carol")
	config := filteredCaddyfile("", "request>headers>X-Subject-Token", e.exchangeRoute(t, "X-Subject-Token"))
	c := startCaddy(t, config, caddyOptions{Env: e.secretEnv()})
	exchangeAndFail(t, c, "X-Subject-Token", map[string]string{token: "carol"})
	logs := c.Logs()
	assertRequestLogged(t, logs)
	assertNoSecrets(t, linesOf(logs, "http.log.access"), token)
	if !strings.Contains(linesOf(logs, "http.log.error"), token) {
		t.Errorf("the 502's error line does not show the subject token: the site's filter covers it after all?")
	}
}

// Caddy's log_credentials logs Authorization too: the warning says so for
// a subject token read from it (the gateway reads the http app's servers
// at provisioning).
func TestSubjectTokenWarnsWhenLogCredentialsIsOn(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	token := "st_" + randomHex(16)
	e.as.AddSubjectToken(token, "carol")
	c := startCaddy(t, e.exchangeRoute(t, "Authorization"), caddyOptions{Env: e.secretEnv(),
		Global: "\tservers {\n\t\tlog_credentials\n\t}\n"})
	exchangeAndFail(t, c, "Authorization", map[string]string{token: "carol"})
	logs := c.Logs()
	if !strings.Contains(linesOf(logs, "http.log.access"), token) {
		t.Errorf("with log_credentials the access log does not show the Authorization subject token")
	}
	if debugLines(logs, `"level":"warn"`, subjectTokenWarning, `"logged":"request header Authorization (log_credentials is on)"`) != 1 {
		t.Errorf("no provisioning warning about log_credentials:\n%s", tail(logs, 30))
	}
}

// The README's first ID-JAG setup, before: forward_auth copies the
// session service's X-Id-Token onto the request. Caddy's access and error
// logs do not show it (they copied the request before forward_auth ran),
// but Caddy's debug line of forward_auth's round trip shows the session
// service's response headers, the ID token among them.
func TestSubjectTokenForwardAuthCustomHeaderReachesDebugLine(t *testing.T) {
	x := newIDJAGEnv(t)
	idToken := x.idp.IDToken("alice", time.Hour)
	sessions := startSessionsAnswering(t, "X-Id-Token", "", map[string]string{"alice": idToken})
	c := startCaddy(t, x.forwardAuthSite(t, sessions, "X-Id-Token", "X-Id-Token"),
		caddyOptions{Env: append(x.secretEnv(), "TEST_IDP_SECRET="+x.idpSecret)})
	idjagRequests(t, c, "alice")
	logs := c.Logs()
	requestLogs := linesOf(logs, "http.log.access") + "\n" + linesOf(logs, "http.log.error")
	if strings.TrimSpace(requestLogs) == "" {
		t.Fatalf("no access or error log lines:\n%s", tail(logs, 20))
	}
	assertNoSecrets(t, requestLogs, idToken)
	if debugLines(logs, `"logger":"http.handlers.reverse_proxy"`, `"upstream":"`+sessions+`"`, idToken) == 0 {
		t.Errorf("Caddy's debug line of forward_auth's round trip no longer shows X-Id-Token")
	}
}

// The documented configurations: access log on, debug logging, a real
// exchange for each user and a 502, and not one log line holding a
// subject token, the gateway's secrets or a token it obtained.
func TestSubjectTokenNeverLoggedInDocumentedConfigurations(t *testing.T) {
	// README, Token exchange: clients present their own access token in
	// Authorization, which Caddy redacts.
	t.Run("token_exchange/Authorization", func(t *testing.T) {
		e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
		tokens := map[string]string{"st_" + randomHex(16): "carol", "st_" + randomHex(16): "dave"}
		for tok, user := range tokens {
			e.as.AddSubjectToken(tok, user)
		}
		c := startCaddy(t, e.exchangeRoute(t, "Authorization"), caddyOptions{Env: e.secretEnv()})
		exchangeAndFail(t, c, "Authorization", tokens)
		assertRequestLogged(t, c.Logs())
		assertNoSecrets(t, c.Logs(), e.secrets(keys(tokens)...)...)
		if debugLines(c.Logs(), subjectTokenWarning) != 0 {
			t.Errorf("warned about Authorization, which Caddy redacts")
		}
	})

	// README, Token exchange, a token in another header: the log filter
	// the README and the warning give, in the site's access log and in
	// the default log (where Caddy's error lines go).
	t.Run("token_exchange/custom header with log filters", func(t *testing.T) {
		e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
		tokens := map[string]string{"st_" + randomHex(16): "carol", "st_" + randomHex(16): "dave"}
		for tok, user := range tokens {
			e.as.AddSubjectToken(tok, user)
		}
		field := "request>headers>X-Subject-Token"
		c := startCaddy(t, filteredCaddyfile(field, field, e.exchangeRoute(t, "X-Subject-Token")), caddyOptions{Env: e.secretEnv()})
		exchangeAndFail(t, c, "X-Subject-Token", tokens)
		assertRequestLogged(t, c.Logs())
		assertNoSecrets(t, c.Logs(), e.secrets(keys(tokens)...)...)
	})

	// README, Enterprise-managed authorization: the session service
	// answers forward_auth with Authorization: Bearer <ID token>, which
	// copy_headers puts on the request; Caddy redacts it in every line,
	// the debug line of forward_auth's round trip included.
	t.Run("id_jag/forward_auth Authorization", func(t *testing.T) {
		x := newIDJAGEnv(t)
		idTokens := map[string]string{"alice": x.idp.IDToken("alice", time.Hour), "bob": x.idp.IDToken("bob", time.Hour)}
		sessions := startSessionsAnswering(t, "Authorization", "Bearer ", idTokens)
		c := startCaddy(t, x.forwardAuthSite(t, sessions, "Authorization", "Authorization"),
			caddyOptions{Env: append(x.secretEnv(), "TEST_IDP_SECRET="+x.idpSecret)})
		idjagRequests(t, c, "alice", "bob")
		if n := len(x.idp.Exchanges()); n != 2 {
			t.Errorf("%d ID-JAG exchanges, want one per user", n)
		}
		assertRequestLogged(t, c.Logs())
		if debugLines(c.Logs(), `"logger":"http.handlers.reverse_proxy"`, `"upstream":"`+sessions+`"`, `"status":200`) == 0 {
			t.Errorf("no debug line of forward_auth's round trip: the scan proves less than it should")
		}
		assertNoSecrets(t, c.Logs(), x.secrets(x.idpSecret, idTokens["alice"], idTokens["bob"])...)
		if debugLines(c.Logs(), subjectTokenWarning) != 0 {
			t.Errorf("warned about Authorization, which Caddy redacts")
		}
	})
}

// README, Enterprise-managed authorization, a session service that
// answers in X-Id-Token: copy_headers renames it to Authorization,
// and the default log filters the response header out of Caddy's
// debug line of forward_auth's round trip.
func TestSubjectTokenNeverLoggedRenamedFromCustomHeader(t *testing.T) {
	x := newIDJAGEnv(t)
	idTokens := map[string]string{"alice": x.idp.IDToken("alice", time.Hour), "bob": x.idp.IDToken("bob", time.Hour)}
	sessions := startSessionsAnswering(t, "X-Id-Token", "", idTokens)
	config := filteredCaddyfile("headers>X-Id-Token", "", x.forwardAuthSite(t, sessions, "X-Id-Token>Authorization", "Authorization"))
	c := startCaddy(t, config, caddyOptions{Env: append(x.secretEnv(), "TEST_IDP_SECRET="+x.idpSecret)})
	idjagRequests(t, c, "alice", "bob")
	if n := len(x.idp.Exchanges()); n != 2 {
		t.Errorf("%d ID-JAG exchanges, want one per user", n)
	}
	assertRequestLogged(t, c.Logs())
	if debugLines(c.Logs(), `"logger":"http.handlers.reverse_proxy"`, `"upstream":"`+sessions+`"`, `"status":200`) == 0 {
		t.Errorf("no debug line of forward_auth's round trip: the scan proves less than it should")
	}
	assertNoSecrets(t, c.Logs(), x.secrets(x.idpSecret, idTokens["alice"], idTokens["bob"])...)
	if debugLines(c.Logs(), subjectTokenWarning) != 0 {
		t.Errorf("warned about Authorization, which Caddy redacts")
	}
}

// startSessionsAnswering is an identity provider's session service for
// forward_auth: the user named by the `session` cookie gets their ID
// token in the response header, after prefix; no cookie is refused.
func startSessionsAnswering(t *testing.T, header, prefix string, idTokens map[string]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if tok := idTokens[c.Value]; tok != "" {
			w.Header().Set(header, prefix+tok)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// forwardAuthSite is the README's ID-JAG site: forward_auth with
// copy_headers, then oauth_gateway reading the header the session
// service's answer was copied to; /down/* goes to an unreachable upstream.
func (x *idjagEnv) forwardAuthSite(t *testing.T, sessions, copyHeaders, subjectHeader string) string {
	return fmt.Sprintf(`	forward_auth %s {
		uri /session
		copy_headers %s
	}
	route {
		oauth_gateway {
			resource           %s
			issuer             %s
			client_id          %s
			client_secret      {env.TEST_CLIENT_SECRET}
			grant              id_jag
			subject_token      {http.request.header.%s}
			idp_token_endpoint %s
			idp_client_id      gateway-at-idp
			idp_client_secret  {env.TEST_IDP_SECRET}
			insecure_allow_http
		}
		reverse_proxy /down/* %s
		reverse_proxy %s
	}`, sessions, copyHeaders, x.up.Resource(), x.as.Issuer(), x.clientID, subjectHeader, x.idp.TokenURL(),
		unreachable(t), strings.TrimPrefix(x.up.URL(), "http://"))
}

// idjagRequests signs each user in (session cookie): one request served
// with the user's own token, one to an upstream that is down (502).
func idjagRequests(t *testing.T, c *caddyProc, users ...string) {
	t.Helper()
	for _, user := range users {
		status, body, _ := getAs(t, http.MethodGet, c.URL("/echo"), user)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", user, status, body)
		}
		if echo := decodeEcho(t, body); echo.Subject != user || slices.Contains(echo.Headers, "X-Id-Token") {
			t.Fatalf("%s: upstream saw subject %q, headers %v", user, echo.Subject, echo.Headers)
		}
		if status, body, _ = getAs(t, http.MethodGet, c.URL("/down/echo"), user); status != http.StatusBadGateway {
			t.Fatalf("%s, upstream down: %d %s", user, status, body)
		}
	}
}

// assertRequestLogged fails unless Caddy wrote access log lines and an
// error line: a scan of a log without them proves nothing.
func assertRequestLogged(t *testing.T, logs string) {
	t.Helper()
	if linesOf(logs, "http.log.access") == "" || !strings.Contains(linesOf(logs, "http.log.error"), `"status":502`) {
		t.Fatalf("the log has no access log lines or no 502 error line:\n%s", tail(logs, 30))
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
