package fakeoauth

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	methodBasic = "client_secret_basic"
	methodPost  = "client_secret_post"
	methodNone  = "none" // a public client: client_id only
)

type client struct {
	secret string
	scopes []string // allowed scopes; none: any
	// public clients authenticate with client_id alone (method none).
	public bool
	// redirectURIs are the registered redirect URIs; nil accepts any
	// (an AddClient client without AddRedirectURI).
	redirectURIs []string
	// secretExpires, when set, ends the secret's validity (RFC 7591
	// client_secret_expires_at).
	secretExpires time.Time
	name          string // client_name, shown on the consent page
	cimd          bool   // learnt from a Client ID Metadata Document

	// assertion is private_key_jwt or client_secret_jwt for a client
	// that authenticates with an RFC 7523 assertion only ("" otherwise).
	assertion   string
	keys        *jose.JSONWebKeySet // private_key_jwt keys (given or fetched)
	jwksURL     string              // where keys are fetched from ("" when given)
	jwksFetched time.Time
	jwksFetches int
}

// authResult is the outcome of client authentication.
type authResult struct {
	id, method string
	code, desc string // error code when authentication failed
	status     int
}

// authenticate checks none (a public client's bare client_id),
// client_secret_basic, whose id and secret are
// form-urlencoded before base64 (RFC 6749 §2.3.1, the step many clients
// miss), client_secret_post, or an RFC 7523 client assertion
// (private_key_jwt, client_secret_jwt). Using more than one at once is an
// invalid_request (§2.3). The caller holds a.mu and has parsed the form;
// for a private_key_jwt client with a JWKS URL, it has called refreshJWKS.
func (a *AuthServer) authenticate(r *http.Request) authResult {
	var res authResult
	var secret string
	u, p, hasBasic := r.BasicAuth()
	hasPost := r.PostForm.Has("client_secret")
	hasAuthz := r.Header.Get("Authorization") != ""
	switch {
	case hasAssertion(r) && (hasAuthz || hasPost):
		return authResult{code: "invalid_request", desc: "more than one client authentication method", status: http.StatusBadRequest}
	case hasAssertion(r):
		return a.authenticateAssertion(r)
	case hasBasic && hasPost:
		return authResult{code: "invalid_request", desc: "more than one client authentication method", status: http.StatusBadRequest}
	case hasBasic:
		var err1, err2 error
		res.id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return authResult{code: "invalid_client", desc: "basic credentials are not form-urlencoded", status: http.StatusUnauthorized}
		}
		res.method = methodBasic
	case hasPost:
		res.id, secret, res.method = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), methodPost
	default:
		res.id = r.PostForm.Get("client_id")
		if c := a.clients[res.id]; c != nil && c.public {
			res.method = methodNone
			return res
		}
		return authResult{id: res.id, code: "invalid_client", desc: "client authentication required", status: http.StatusUnauthorized}
	}
	c, known := a.clients[res.id]
	switch {
	case !slices.Contains(a.opts.AuthMethods, res.method):
		res.code, res.desc = "invalid_client", res.method+" is not supported"
	case !known || c.public || c.assertion != "" || c.secret != secret:
		res.code, res.desc = "invalid_client", "client authentication failed"
	case !c.secretExpires.IsZero() && time.Now().After(c.secretExpires):
		res.code, res.desc = "invalid_client", "client secret expired"
	default:
		return res
	}
	res.status = http.StatusUnauthorized
	return res
}
