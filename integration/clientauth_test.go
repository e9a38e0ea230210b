package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 10 (client authentication with go-jose): private_key_jwt against
// a server that accepts nothing else, verified by the server's own code
// against the JWKS the gateway publishes.

// writeKey writes a fresh private key in the given form and returns the
// file.
func writeKey(t *testing.T, kind, form string) string {
	t.Helper()
	var priv any
	var err error
	switch kind {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	switch form {
	case "pem":
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if rk, ok := priv.(*rsa.PrivateKey); ok {
			data = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
		} else {
			data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
	case "jwk":
		if data, err = json.Marshal(jose.JSONWebKey{Key: priv}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "client."+form)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *env) keySite(keyPath string, extra ...string) string {
	return fmt.Sprintf(`	oauth_gateway {
		resource       %s
		issuer         %s
		client_id      %s
		client_key     %s
		jwks_uri       http://127.0.0.1:{PORT}/.well-known/jwks.json
		insecure_allow_http
%s
	}
	reverse_proxy %s`, e.up.Resource(), e.as.Issuer(), e.clientID, keyPath, indent(extra), strings.TrimPrefix(e.up.URL(), "http://"))
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"ES256", "RS256"} {
		for _, form := range []string{"pem", "jwk"} {
			t.Run(kind+" "+form, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, fakeoauth.AuthServerOptions{AuthMethods: []string{"private_key_jwt"}}, fakeoauth.UpstreamOptions{})
				c := startCaddy(t, e.keySite(writeKey(t, kind, form)), caddyOptions{})
				e.as.AddKeyClient(e.clientID, c.URL("/.well-known/jwks.json"))
				status, body, _ := get(t, c.URL("/echo"))
				if status != http.StatusOK {
					t.Fatalf("status %d %s\n%s", status, body, tail(c.Logs(), 10))
				}
				log := e.as.AssertionLog()
				if len(log) != 1 || !log[0].Accepted || log[0].Alg != kind || log[0].AudIsArray || len(log[0].Aud) != 1 || log[0].Aud[0] != e.as.Issuer() {
					t.Fatalf("assertions %+v, want one %s assertion with aud = the issuer %s", log, kind, e.as.Issuer())
				}
				// The published key set holds public keys only.
				_, jwks, _ := get(t, c.URL("/.well-known/jwks.json"))
				if strings.Contains(string(jwks), `"d"`) || !strings.Contains(string(jwks), `"kid"`) {
					t.Fatalf("JWKS %s", jwks)
				}
			})
		}
	}
}

// A server that offers only private_key_jwt and a configuration with only
// a secret: a clear error naming both sides, no Basic fallback.
func TestNoClientAuthMethodFits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{AuthMethods: []string{"private_key_jwt"}}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.discoverySite(e.up.Resource(), "discovery_allow_hosts 127.0.0.1"), caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusBadGateway || !strings.Contains(string(body), "client authentication") {
		t.Fatalf("status %d %s, want 502 about client authentication", status, body)
	}
	if n := e.as.TokenRequests(""); n != 0 {
		t.Fatalf("%d token requests: the gateway fell back to a method the server does not offer", n)
	}
	if debugLines(c.Logs(), "offers private_key_jwt", "client_secret_basic") == 0 {
		t.Errorf("the log does not name what the server offers and what is configured:\n%s", tail(c.Logs(), 10))
	}
}
