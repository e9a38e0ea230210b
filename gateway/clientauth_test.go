package gateway

import (
	"strings"
	"testing"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
)

// Issue 10, behaviour 1: the method is chosen among those the
// configuration makes possible, and nothing fitting is an error naming
// both sides, never a silent fallback to Basic.
func TestChooseAuthMethod(t *testing.T) {
	secret := clientAuth{secret: true}
	key := clientAuth{key: &oauthclient.SigningKey{}}
	public := clientAuth{}
	for _, c := range []struct {
		auth    clientAuth
		offered []string
		want    string // "" for an error
	}{
		{secret, nil, "client_secret_basic"}, // RFC 8414 default
		{secret, []string{"client_secret_post"}, "client_secret_post"},
		{secret, []string{"client_secret_post", "client_secret_basic"}, "client_secret_basic"},
		{secret, []string{"client_secret_jwt"}, "client_secret_jwt"},
		{secret, []string{"private_key_jwt"}, ""},
		{secret, []string{"none"}, ""},
		{key, []string{"client_secret_basic", "private_key_jwt"}, "private_key_jwt"},
		{key, []string{"client_secret_basic"}, ""},
		{public, []string{"client_secret_basic", "none"}, "none"},
		{public, []string{"client_secret_basic"}, ""},
		{clientAuth{configured: "client_secret_post", secret: true}, []string{"client_secret_basic"}, "client_secret_post"},
	} {
		got, err := c.auth.choose(c.offered)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%+v offered %v: got %q %v, want %q", c.auth, c.offered, got, err, c.want)
		}
		if err != nil && (!strings.Contains(err.Error(), strings.Join(c.offered, ", ")) || !strings.Contains(err.Error(), "this configuration can use")) {
			t.Errorf("error %q does not name both sides", err)
		}
	}
}
