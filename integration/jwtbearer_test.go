package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// Issue 10, acceptance 2: jwt_bearer with an assertion file rewritten
// between token requests: each request carries the file's current
// content; a missing file is a clear error, not a crash loop.
func TestJWTBearerReadsTheAssertionFresh(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fakeoauth.AuthServerOptions{JWTBearerKeys: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k8s"}}}},
		fakeoauth.UpstreamOptions{})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	project := func(jti string) {
		now := time.Now()
		tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "https://kubernetes.default.svc", Subject: "system:serviceaccount:ns:app",
			Audience: jwt.Audience{e.as.Issuer()}, ID: jti, IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".tmp", []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil { // as the kubelet does: atomically
			t.Fatal(err)
		}
	}
	project("first")
	site := fmt.Sprintf(`	oauth_gateway {
		resource       %s
		issuer         %s
		grant          jwt_bearer
		assertion_file %s
		client_id      %s
		client_secret  {env.TEST_CLIENT_SECRET}
		insecure_allow_http
	}
	reverse_proxy %s`, e.up.Resource(), e.as.Issuer(), path, e.clientID, strings.TrimPrefix(e.up.URL(), "http://"))
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	status, body, _ := get(t, c.URL("/echo"))
	if status != http.StatusOK || decodeEcho(t, body).Subject != "system:serviceaccount:ns:app" {
		t.Fatalf("first request: %d %s", status, body)
	}
	project("second")
	e.as.InvalidateAccessTokens()
	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK {
		t.Fatalf("after rotation: %d %s", status, body)
	}
	var jtis []string
	for _, a := range e.as.BearerAssertions() {
		jtis = append(jtis, a.ID)
	}
	if strings.Join(jtis, ",") != "first,second" {
		t.Fatalf("assertions presented %v, want the file's content at each request", jtis)
	}

	// The file disappears: the next token request fails clearly (here
	// forced by an operator), and nothing is sent without an assertion.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	id := listCredentials(t, c)[0].ID
	status, raw := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+id+"/refresh", "")
	if status != http.StatusBadGateway || !strings.Contains(string(raw), "assertion_file") {
		t.Fatalf("refresh without the file: %d %s", status, raw)
	}
	if st := listCredentials(t, c)[0]; !strings.Contains(st.LastError, "assertion_file") {
		t.Fatalf("last error %q does not name the file", st.LastError)
	}
	if n := len(e.as.BearerAssertions()); n != 2 {
		t.Fatalf("%d jwt-bearer requests, want no new one without an assertion", n)
	}
	if debugLines(c.Logs(), "assertion_file", path) == 0 {
		t.Errorf("the log does not name the file:\n%s", tail(c.Logs(), 10))
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}
