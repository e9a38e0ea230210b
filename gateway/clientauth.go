package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
)

// clientAuth is what the configuration can authenticate the client with:
// a configured method, a shared secret, a signing key, or nothing (a
// public client).
type clientAuth struct {
	configured string // an oauthclient.Auth* method, or "" to choose
	secret     bool
	key        *oauthclient.SigningKey
}

// preference orders the methods a configuration may make possible:
// assertions bound to the server (no reusable secret on the wire) first,
// then the RFC 8414 default.
var preference = []string{oauthclient.AuthPrivateKeyJWT, oauthclient.AuthBasic, oauthclient.AuthPost,
	oauthclient.AuthClientSecretJWT, oauthclient.AuthNone}

// possible lists the methods this configuration can use.
func (a clientAuth) possible() []string {
	switch {
	case a.configured != "":
		return []string{a.configured}
	case a.key != nil:
		return []string{oauthclient.AuthPrivateKeyJWT}
	case a.secret:
		return []string{oauthclient.AuthBasic, oauthclient.AuthPost, oauthclient.AuthClientSecretJWT}
	}
	return []string{oauthclient.AuthNone}
}

// choose picks the method to use with a server that offers offered
// (token_endpoint_auth_methods_supported; empty: unknown, and RFC 8414's
// default client_secret_basic is assumed for a secret). It never falls
// back silently: when nothing fits, the error names both sides.
func (a clientAuth) choose(offered []string) (string, error) {
	possible := a.possible()
	if a.configured != "" {
		return a.configured, nil
	}
	if len(offered) == 0 {
		return possible[0], nil
	}
	for _, m := range preference {
		if slices.Contains(possible, m) && slices.Contains(offered, m) {
			return m, nil
		}
	}
	return "", &configError{
		msg: fmt.Sprintf("the authorization server offers %s for client authentication; this configuration can use %s",
			strings.Join(offered, ", "), strings.Join(possible, ", ")),
		hint: "the authorization server offers none of the client authentication methods this configuration can use (set client_secret, client_key or client_auth; the gateway's log names both sides)",
	}
}

// configError is a fault only a configuration change fixes. It is
// neither permanent for the credential nor transient: the store retries
// it slowly. hint is safe to show clients.
type configError struct{ msg, hint string }

func (e *configError) Error() string   { return e.msg }
func (e *configError) Permanent() bool { return false }
func (e *configError) Transient() bool { return false }

// clientAuthMethods maps the accepted client_auth values to oauthclient's
// method names: the short names and the RFC 8414 names.
var clientAuthMethods = map[string]string{
	"basic": oauthclient.AuthBasic, oauthclient.AuthBasic: oauthclient.AuthBasic,
	"post": oauthclient.AuthPost, oauthclient.AuthPost: oauthclient.AuthPost,
	"none":                          oauthclient.AuthNone,
	oauthclient.AuthPrivateKeyJWT:   oauthclient.AuthPrivateKeyJWT,
	oauthclient.AuthClientSecretJWT: oauthclient.AuthClientSecretJWT,
}

// serveJWKS publishes the gateway's public keys (jwks_uri), so an
// authorization server (or a client metadata document) can verify its
// private_key_jwt assertions. Only public keys are ever in it.
func (g *Gateway) serveJWKS(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, err := w.Write(g.jwks)
	return err
}

// clientAuth loads the signing key (when configured) and the JWKS that
// publishes it, and says what the configuration can authenticate with.
func (g *Gateway) clientAuth() (clientAuth, error) {
	x := &g.Config
	auth := clientAuth{configured: clientAuthMethods[g.ClientAuth], secret: x.ClientSecret != ""}
	if x.ClientKey != "" {
		key, err := oauthclient.LoadSigningKey(x.ClientKey, "", g.ClientKeyID)
		if err != nil {
			return auth, fmt.Errorf("client_key: %w", err)
		}
		auth.key = key
		if g.jwks, err = oauthclient.PublicJWKS(key); err != nil {
			return auth, fmt.Errorf("client_key: %w", err)
		}
	}
	if x.JWKSURI != "" {
		u, err := url.Parse(x.JWKSURI)
		if err != nil {
			return auth, fmt.Errorf("jwks_uri: %v", err)
		}
		g.jwksPath = u.Path
	}
	return auth, nil
}
