package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// env is one authorization server, one upstream and the client
// credentials the gateway holds for it.
type env struct {
	as           *fakeoauth.AuthServer
	up           *fakeoauth.Upstream
	clientID     string
	clientSecret string
}

func newEnv(t *testing.T, asOpts fakeoauth.AuthServerOptions, upOpts fakeoauth.UpstreamOptions) *env {
	t.Helper()
	as, err := fakeoauth.StartAuthServer(asOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	upOpts.AuthServer = as
	up, err := fakeoauth.StartUpstream(upOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	e := &env{as: as, up: up, clientID: "gateway-client", clientSecret: "cs_" + randomHex(16)}
	as.AddClient(e.clientID, e.clientSecret)
	return e
}

// gatewaySite is a site body: oauth_gateway with the given extra
// subdirectives, then reverse_proxy to the upstream.
func (e *env) gatewaySite(extra ...string) string {
	return fmt.Sprintf(`	oauth_gateway {
		resource       %s
		token_endpoint %s
		client_id      %s
		client_secret  {env.TEST_CLIENT_SECRET}
		insecure_allow_http
%s
	}
	reverse_proxy %s {
		flush_interval -1
	}`, e.up.Resource(), e.as.TokenURL(), e.clientID, indent(extra), strings.TrimPrefix(e.up.URL(), "http://"))
}

// secretEnv passes the client secret the way users do: an env placeholder.
func (e *env) secretEnv() []string { return []string{"TEST_CLIENT_SECRET=" + e.clientSecret} }

// secrets are every value that must never appear in a log.
func (e *env) secrets(extra ...string) []string {
	return append(append([]string{e.clientSecret}, e.as.IssuedSecrets()...), extra...)
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("\t\t" + l + "\n")
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
