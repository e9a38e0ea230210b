package fakeoauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestJWTBearerGrant(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	as, err := StartAuthServer(AuthServerOptions{JWTBearerKeys: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.AddClient("c", "s")
	sign := func(k *ecdsa.PrivateKey, aud string, exp time.Time) string {
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, nil)
		s, _ := jwt.Signed(signer).Claims(jwt.Claims{Subject: "workload", ID: "j", Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(exp)}).Serialize()
		return s
	}
	for _, c := range []struct {
		name      string
		assertion string
		want      int
	}{
		{"valid", sign(key, as.Issuer(), time.Now().Add(time.Hour)), http.StatusOK},
		{"other key", sign(other, as.Issuer(), time.Now().Add(time.Hour)), http.StatusBadRequest},
		{"token endpoint as audience", sign(key, as.TokenURL(), time.Now().Add(time.Hour)), http.StatusBadRequest},
		{"expired", sign(key, as.Issuer(), time.Now().Add(-time.Minute)), http.StatusBadRequest},
		{"garbage", "not-a-jwt", http.StatusBadRequest},
	} {
		form := url.Values{"grant_type": {GrantJWTBearer}, "assertion": {c.assertion}}
		req, _ := http.NewRequest(http.MethodPost, as.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("c", "s")
		client := &http.Client{Timeout: 5 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	if log := as.BearerAssertions(); len(log) != 5 || !log[0].Accepted || log[0].Subject != "workload" || log[1].Accepted {
		t.Fatalf("log %+v", log)
	}
}
