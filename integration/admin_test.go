package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

type credStatus struct {
	ID         string   `json:"id"`
	Resource   string   `json:"resource"`
	Principal  string   `json:"principal"`
	Issuer     string   `json:"issuer"`
	Grant      string   `json:"grant"`
	Scopes     []string `json:"scopes"`
	Generation uint64   `json:"generation"`
	State      string   `json:"state"`
	LastError  string   `json:"last_error"`
}

func adminDo(t *testing.T, c *caddyProc, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, c.AdminURL(path), strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	status, b, _ := do(t, req)
	return status, b
}

func listCredentials(t *testing.T, c *caddyProc) []credStatus {
	t.Helper()
	status, body := adminDo(t, c, http.MethodGet, "/oauth_gateway/credentials", "")
	var list []credStatus
	if status != http.StatusOK || json.Unmarshal(body, &list) != nil {
		t.Fatalf("list: %d %s", status, body)
	}
	return list
}

// Issue 6: the admin API end to end, and no secret in any response.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true}, fakeoauth.UpstreamOptions{})
	seed := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	site := e.gatewaySite("grant refresh_token", "refresh_token {env.TEST_SEED}", "revocation_endpoint "+e.as.RevocationURL())
	c := startCaddy(t, site, caddyOptions{Env: append(e.secretEnv(), "TEST_SEED="+seed)})
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatal("first request failed")
	}
	var responses []string

	list := listCredentials(t, c)
	if len(list) != 1 || list[0].Resource != e.up.Resource() || list[0].Grant != "refresh_token" || list[0].Generation != 1 || list[0].State != "healthy" {
		t.Fatalf("list %+v", list)
	}
	id := list[0].ID

	// A change stream: the snapshot first, then a change per refresh.
	resp, err := http.Get(c.AdminURL("/oauth_gateway/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	readEvent := func() (string, map[string]any) {
		t.Helper()
		done := make(chan struct{})
		var name string
		var data map[string]any
		go func() {
			defer close(done)
			for {
				line, err := events.ReadString('\n')
				if err != nil {
					return
				}
				responses = append(responses, line)
				if v, ok := strings.CutPrefix(line, "event: "); ok {
					name = strings.TrimSpace(v)
				}
				if v, ok := strings.CutPrefix(line, "data: "); ok {
					_ = json.Unmarshal([]byte(v), &data)
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return name, data
	}
	if name, data := readEvent(); name != "snapshot" || data["id"] != id {
		t.Fatalf("first event %s %v", name, data)
	}

	status, body := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/refresh", "")
	responses = append(responses, string(body))
	if status != http.StatusOK || !strings.Contains(string(body), `"generation":2`) {
		t.Fatalf("force refresh: %d %s", status, body)
	}
	if name, data := readEvent(); name != "change" || data["generation"] != float64(2) || data["kind"] != "refreshed" {
		t.Fatalf("change event %s %v", name, data)
	}

	// Kill the family: the credential dies; an upload revives it.
	e.as.RevokeAll()
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusBadGateway {
		t.Fatalf("after revocation: %d", status)
	}
	if st := listCredentials(t, c)[0]; st.State != "dead" || st.LastError == "" {
		t.Fatalf("state %+v", st)
	}
	fresh := e.as.IssueRefreshToken(e.clientID, []string{"read"})
	status, body = adminDo(t, c, http.MethodPut, "/oauth_gateway/credentials/"+id+"/refresh_token", `{"refresh_token":"`+fresh+`"}`)
	responses = append(responses, string(body))
	if status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, body)
	}
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("after upload: %d %s", status, body)
	}
	if e.as.ReuseDetections() != 0 {
		t.Fatal("reuse detected")
	}

	// Revoke: refresh token first, then the access token; then forgotten.
	status, body = adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/revoke", "")
	responses = append(responses, string(body))
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if got := strings.Join(e.as.Revocations(), ","); got != "refresh_token,access_token" {
		t.Fatalf("revocations %q", got)
	}
	if st := listCredentials(t, c)[0]; st.State != "dead" || !strings.Contains(st.LastError, "revoked by an operator") {
		t.Fatalf("after revoke %+v", st)
	}
	// Clients are told an operator revoked it, not that the server did.
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusBadGateway || !strings.Contains(string(body), "revoked by an operator") {
		t.Fatalf("after revoke: %d %s", status, body)
	}
	if status, _ := adminDo(t, c, http.MethodGet, "/oauth_gateway/credentials/nope", ""); status != http.StatusNotFound {
		t.Fatalf("unknown id: %d", status)
	}

	_, listBody := adminDo(t, c, http.MethodGet, "/oauth_gateway/credentials", "")
	responses = append(responses, string(listBody))
	assertNoSecrets(t, strings.Join(responses, "\n"), e.secrets(seed, fresh)...)
	assertNoSecrets(t, c.Logs(), e.secrets(seed, fresh)...)
}

// Issue 6: the gateway's metrics on Caddy's metrics endpoint.
func TestMetricsOnCaddyEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.gatewaySite(), caddyOptions{Env: e.secretEnv()})
	for i := 0; i < 3; i++ {
		get(t, c.URL("/echo"))
	}
	e.as.InvalidateAccessTokens()
	get(t, c.URL("/echo"))

	resp, err := http.Get(c.AdminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(b)
	for _, want := range []string{
		`caddy_oauth_gateway_token_requests_total{grant="client_credentials",outcome="success"} 2`,
		`caddy_oauth_gateway_refreshes_total{kind="reactive"} 1`,
		`caddy_oauth_gateway_replays_total{cause="unauthorized"} 1`,
		`caddy_oauth_gateway_token_cache_total{result="hit"} 3`,
		`caddy_oauth_gateway_token_cache_total{result="miss"} 1`,
		`caddy_oauth_gateway_token_request_duration_seconds_count{grant="client_credentials"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(metrics, "\n") {
			if strings.Contains(l, "oauth_gateway") {
				t.Log(l)
			}
		}
	}
	// A config reload keeps the cached token (the token manager outlives
	// the config) and re-registers the collectors.
	before := e.as.TokenRequests("")
	reload := exec.Command(caddyBin, "reload", "--config", c.config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", c.admin), "--force")
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if status, _, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("after reload: %d", status)
	}
	if n := e.as.TokenRequests("") - before; n != 0 {
		t.Fatalf("token requests after reload = %d, want 0", n)
	}
	resp, err = http.Get(c.AdminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `caddy_oauth_gateway_token_cache_total{result="hit"} 4`) {
		t.Errorf("metrics after reload lack the carried-over hit count")
	}
}
