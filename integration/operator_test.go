package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Regression tests for issue 13 (operator experience).

// Item 1: placeholders are expanded in every subdirective; one that
// expands to nothing is an error naming it and the handler's place.
func TestPlaceholdersAreExpandedEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	site := strings.NewReplacer("client_id      "+e.clientID, "client_id      {env.TEST_CLIENT_ID}",
		"token_endpoint "+e.as.TokenURL(), "token_endpoint {env.TEST_TOKEN_URL}").Replace(e.gatewaySite())
	env := append(e.secretEnv(), "TEST_CLIENT_ID="+e.clientID, "TEST_TOKEN_URL="+e.as.TokenURL())
	c := startCaddy(t, site, caddyOptions{Env: env})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	if r := e.as.Requests(); len(r) != 1 || r[0].ClientID != e.clientID {
		t.Fatalf("token requests %+v: the placeholder was not expanded", r)
	}
	unset := strings.NewReplacer("client_id      "+e.clientID, "client_id      {env.OAUTHGW_SURELY_UNSET}",
		"{env.TEST_CLIENT_SECRET}", "not-a-real-secret").Replace(e.gatewaySite())
	out := startCaddyExpectFailure(t, unset, "")
	if !strings.Contains(out, "client_id: {env.OAUTHGW_SURELY_UNSET} expanded to nothing") || !strings.Contains(out, "Caddyfile:") {
		t.Fatalf("validate output does not name the placeholder and its place:\n%s", tail(out, 5))
	}
}

// Item 2: revoke revokes or changes nothing; ?forget=true drops the
// credential locally; clients are then told an operator did it. Also
// item 3: refresh_token without grant implies grant refresh_token.
func TestRevokeWithoutEndpointChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	c := startCaddy(t, e.gatewaySite("refresh_token {env.TEST_SEED}"), caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("first request: %d %s", status, body)
	}
	st := listCredentials(t, c)[0]
	if st.Grant != "refresh_token" {
		t.Fatalf("grant %q, want refresh_token implied by the seed", st.Grant)
	}
	status, body := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+st.ID+"/revoke", "")
	if status != http.StatusConflict || !strings.Contains(string(body), "forget=true") || strings.Count(string(body), "no revocation endpoint") != 1 {
		t.Fatalf("revoke without endpoint: %d %s, want one clear 409", status, body)
	}
	if after := listCredentials(t, c)[0]; after.Generation != st.Generation || after.State != "healthy" {
		t.Fatalf("a refused revoke changed the credential: %+v", after)
	}
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatal("clients broken by a refused revoke")
	}
	status, body = adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+st.ID+"/revoke?forget=true", "")
	if status != http.StatusOK {
		t.Fatalf("forget: %d %s", status, body)
	}
	status, body, _ = get(t, c.URL("/echo"))
	if status != http.StatusBadGateway || !strings.Contains(string(body), "revoked by an operator") {
		t.Fatalf("after forget: %d %s", status, body)
	}
	if len(e.as.Revocations()) != 0 {
		t.Fatal("forget revoked something")
	}
}

// Item 2: with token_endpoint and issuer configured, the revocation
// endpoint is read from the issuer's metadata.
func TestRevokeReadsTheIssuersMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true}, fakeoauth.UpstreamOptions{})
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.gatewaySite("issuer "+e.as.Issuer(), "refresh_token {env.TEST_SEED}")
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	get(t, c.URL("/echo"))
	id := listCredentials(t, c)[0].ID
	if status, body := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/revoke", ""); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if got := strings.Join(e.as.Revocations(), ","); got != "refresh_token,access_token" {
		t.Fatalf("revocations %q", got)
	}
}

// Item 4: the first acquisition is counted and logged as initial.
// Item 8: scopes from discovery are listed.
func TestInitialAcquisitionAndDiscoveredScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	get(t, c.URL("/echo"))
	_, metrics, _ := get(t, c.AdminURL("/metrics"))
	if !strings.Contains(string(metrics), `caddy_oauth_gateway_refreshes_total{kind="initial"} 1`) ||
		strings.Contains(string(metrics), `kind="proactive"`) {
		t.Fatalf("refresh kinds:\n%s", grepLines(string(metrics), "refreshes_total"))
	}
	if debugLines(c.Logs(), "obtained token", `"reason":"initial"`) != 1 {
		t.Errorf("the first acquisition is not logged as initial:\n%s", tail(c.Logs(), 10))
	}
	if st := listCredentials(t, c)[0]; strings.Join(st.Scopes, " ") != "read write" {
		t.Fatalf("listed scopes %v, want the discovered read write", st.Scopes)
	}
}

// Item 12: an authorization server that rejects the RFC 8707 resource
// parameter the way Entra ID v2 does: the error names the fix, the
// gateway retries slowly, and `resource_parameter off` works.
func TestEntraStyleResourceRejection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{RejectResource: true}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite("scope read"), caddyOptions{Env: e.secretEnv()})
	for i := 0; i < 5; i++ {
		status, body, _ := get(t, c.URL("/echo"))
		if status != http.StatusBadGateway || !strings.Contains(string(body), "resource_parameter off") {
			t.Fatalf("request %d: %d %s, want 502 naming resource_parameter off", i, status, body)
		}
	}
	if n := e.as.TokenRequests(""); n != 1 {
		t.Fatalf("token requests = %d, want 1 (a configuration fault is retried slowly)", n)
	}
	if debugLines(c.Logs(), "resource parameter", "resource_parameter off") == 0 {
		t.Errorf("the log does not name the fix:\n%s", tail(c.Logs(), 10))
	}
	c2 := startCaddy(t, e.gatewaySite("scope read", "resource_parameter off"), caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c2.URL("/echo")); status != http.StatusOK {
		t.Fatalf("with resource_parameter off: %d %s", status, body)
	}
	if r := e.as.Requests(); r[len(r)-1].Resource != "" {
		t.Fatalf("resource sent anyway: %+v", r[len(r)-1])
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
