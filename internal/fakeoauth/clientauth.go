package fakeoauth

import (
	"net/http"
	"net/url"
	"slices"
)

const (
	methodBasic = "client_secret_basic"
	methodPost  = "client_secret_post"
)

type client struct {
	secret string
	scopes []string // allowed scopes; none: any
}

// authResult is the outcome of client authentication.
type authResult struct {
	id, method string
	code, desc string // error code when authentication failed
	status     int
}

// authenticate checks client_secret_basic, whose id and secret are
// form-urlencoded before base64 (RFC 6749 §2.3.1, the step many clients
// miss), or client_secret_post. Using both at once is an invalid_request
// (§2.3). The caller holds a.mu and has parsed the form.
func (a *AuthServer) authenticate(r *http.Request) authResult {
	var res authResult
	var secret string
	u, p, hasBasic := r.BasicAuth()
	hasPost := r.PostForm.Has("client_secret")
	switch {
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
		return authResult{id: res.id, code: "invalid_client", desc: "client authentication required", status: http.StatusUnauthorized}
	}
	c, known := a.clients[res.id]
	switch {
	case !slices.Contains(a.opts.AuthMethods, res.method):
		res.code, res.desc = "invalid_client", res.method+" is not supported"
	case !known || c.secret != secret:
		res.code, res.desc = "invalid_client", "client authentication failed"
	default:
		return res
	}
	res.status = http.StatusUnauthorized
	return res
}
