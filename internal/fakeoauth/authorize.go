package fakeoauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// AuthorizationLog is one decision taken on the login page. It holds no
// secret (no code), so a test may print it.
type AuthorizationLog struct {
	Time        time.Time
	ClientID    string
	RedirectURI string
	User        string // "" when denied
	Denied      bool
	Scope       string
	Resource    string
	// Extra holds the parameters beyond the standard ones (access_type,
	// prompt, ...), first value each.
	Extra map[string]string
}

// standardAuthzParams are the authorization request parameters the
// server understands; the others are recorded as AuthorizationLog.Extra.
var standardAuthzParams = []string{"response_type", "client_id", "redirect_uri", "state",
	"code_challenge", "code_challenge_method", "scope", "resource"}

// AuthorizeURL is the authorization endpoint.
func (a *AuthServer) AuthorizeURL() string { return a.Issuer() + "/authorize" }

// decideURL is where the login page posts its decision.
func (a *AuthServer) decideURL() string { return a.Issuer() + "/authorize/decide" }

// AddRedirectURI registers a redirect URI for a client added with
// AddClient or AddPublicClient. Until the first call, such a client may
// use any absolute redirect URI; afterwards only the registered ones.
func (a *AuthServer) AddRedirectURI(clientID, uri string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.clients[clientID]
	if c == nil {
		c = &client{}
		a.clients[clientID] = c
	}
	c.redirectURIs = append(slices.Clone(c.redirectURIs), uri)
}

// AddPublicClient registers a public client (token endpoint auth method
// none) with its redirect URIs (none: any absolute URI).
func (a *AuthServer) AddPublicClient(id string, redirectURIs ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &client{public: true}
	if len(redirectURIs) > 0 {
		c.redirectURIs = slices.Clone(redirectURIs)
	}
	a.clients[id] = c
}

// Authorizations returns the login page decisions, oldest first.
func (a *AuthServer) Authorizations() []AuthorizationLog {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.authz)
	for i := range out {
		out[i].Extra = cloneMap(out[i].Extra)
	}
	return out
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// authzRequest is a validated authorization request.
type authzRequest struct {
	params      url.Values
	clientID    string
	clientName  string
	redirectURI string
	state       string
	challenge   string
	method      string
	scope       string
	resource    string
}

// authzFailure is a refused authorization request: a 400 page when the
// client or redirect URI cannot be trusted (RFC 6749 §4.1.2.1), else an
// error sent back to the redirect URI.
type authzFailure struct {
	page bool
	code string
	desc string
}

func pageFailure(desc string) *authzFailure { return &authzFailure{page: true, desc: desc} }

// checkAuthz validates an authorization request. refetch fetches a
// Client ID Metadata Document even when cached (at /authorize).
func (a *AuthServer) checkAuthz(ctx context.Context, q url.Values, refetch bool) (*authzRequest, *authzFailure) {
	req := &authzRequest{
		params: q, clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), state: q.Get("state"),
		challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method"),
		scope: q.Get("scope"), resource: q.Get("resource"),
	}
	if req.clientID == "" {
		return nil, pageFailure("client_id is missing")
	}
	if a.isCIMD(req.clientID) {
		if refetch {
			if err := a.fetchCIMD(ctx, req.clientID); err != nil {
				return nil, pageFailure(err.Error())
			}
		} else {
			a.cimdIfMissing(ctx, req.clientID)
		}
	}
	a.mu.Lock()
	c := a.clients[req.clientID]
	var uris, allowed []string
	var anyURI, cimd bool
	if c != nil {
		uris, allowed, anyURI, cimd = slices.Clone(c.redirectURIs), slices.Clone(c.scopes), c.redirectURIs == nil, c.cimd
		req.clientName = c.name
	}
	a.mu.Unlock()
	switch {
	case c == nil:
		return nil, pageFailure("unknown client_id " + req.clientID)
	case req.redirectURI == "":
		return nil, pageFailure("redirect_uri is missing")
	case !absoluteURL(req.redirectURI):
		return nil, pageFailure("redirect_uri " + req.redirectURI + " is not an absolute URL without fragment")
	case !anyURI && !slices.Contains(uris, req.redirectURI):
		if cimd {
			return nil, pageFailure("redirect_uri " + req.redirectURI + " is not listed in the client's metadata document")
		}
		return nil, pageFailure("redirect_uri " + req.redirectURI + " is not registered for client " + req.clientID)
	}
	fail := func(desc string) (*authzRequest, *authzFailure) {
		return req, &authzFailure{code: "invalid_request", desc: desc}
	}
	if q.Get("response_type") != "code" {
		return fail("response_type must be code")
	}
	if !a.opts.NoS256 {
		if req.challenge == "" {
			return fail("code_challenge is required (PKCE)")
		}
		if req.method != "S256" {
			return fail("code_challenge_method must be S256")
		}
	} else {
		if req.method == "" && req.challenge != "" {
			req.method = "plain"
		}
		if req.method != "" && req.method != "plain" && req.method != "S256" {
			return fail("code_challenge_method " + req.method + " is not supported")
		}
	}
	if len(allowed) > 0 {
		for _, s := range strings.Fields(req.scope) {
			if !slices.Contains(allowed, s) {
				return req, &authzFailure{code: "invalid_scope", desc: "scope " + s + " is not allowed for this client"}
			}
		}
	}
	return req, nil
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != "" && u.Fragment == "" && !strings.Contains(s, "#")
}

// serveAuthorize is the authorization endpoint (RFC 6749 §4.1.1): it
// validates the request and shows the login and consent page.
func (a *AuthServer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", http.MethodGet)
		errorPage(w, http.StatusMethodNotAllowed, a.Issuer(), "the authorization endpoint takes GET")
		return
	}
	q := r.URL.Query()
	delete(q, "user")
	delete(q, "deny")
	req, f := a.checkAuthz(r.Context(), q, true)
	if f != nil {
		a.refuse(w, r, req, f)
		return
	}
	a.loginPage(w, req)
}

// serveDecide takes the login page's decision: a code for the chosen
// user, or access_denied.
func (a *AuthServer) serveDecide(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		errorPage(w, http.StatusMethodNotAllowed, a.Issuer(), "the decision is posted by the login page")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, a.Issuer(), "the form could not be read")
		return
	}
	q := url.Values{}
	for k, v := range r.PostForm {
		if k != "user" && k != "deny" {
			q[k] = v
		}
	}
	req, f := a.checkAuthz(r.Context(), q, false)
	if f != nil {
		a.refuse(w, r, req, f)
		return
	}
	entry := AuthorizationLog{Time: time.Now(), ClientID: req.clientID, RedirectURI: req.redirectURI,
		Scope: req.scope, Resource: req.resource, Extra: map[string]string{}}
	for k := range q {
		if !slices.Contains(standardAuthzParams, k) {
			entry.Extra[k] = q.Get(k)
		}
	}
	back := url.Values{}
	if req.state != "" {
		back.Set("state", req.state)
	}
	user := r.PostForm.Get("user")
	switch {
	case r.PostForm.Get("deny") != "":
		entry.Denied = true
		back.Set("error", "access_denied")
		back.Set("error_description", "the user denied the request")
		a.mu.Lock()
		a.authz = append(a.authz, entry)
		a.mu.Unlock()
	case !slices.Contains(a.opts.Users, user):
		errorPage(w, http.StatusBadRequest, a.Issuer(), "unknown user "+user)
		return
	default:
		entry.User = user
		a.mu.Lock()
		back.Set("code", a.issueCode(req, user))
		a.authz = append(a.authz, entry)
		a.mu.Unlock()
	}
	a.redirectBack(w, r, req.redirectURI, back)
}

// refuse answers a failed authorization request.
func (a *AuthServer) refuse(w http.ResponseWriter, r *http.Request, req *authzRequest, f *authzFailure) {
	if f.page {
		errorPage(w, http.StatusBadRequest, a.Issuer(), f.desc)
		return
	}
	back := url.Values{"error": {f.code}, "error_description": {f.desc}}
	if req.state != "" {
		back.Set("state", req.state)
	}
	a.redirectBack(w, r, req.redirectURI, back)
}

// SetResponseIss sets what authorization responses carry as iss (RFC
// 9207): send false leaves it out; iss "" sends the issuer, anything else
// is sent as given. advertised says whether the metadata lists
// authorization_response_iss_parameter_supported.
func (a *AuthServer) SetResponseIss(send bool, iss string, advertised bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sendIss, a.responseIss, a.issAdvertised = send, iss, advertised
}

// redirectBack sends the authorization response to the client's redirect
// URI, keeping its query, with iss (RFC 9207) unless told otherwise.
func (a *AuthServer) redirectBack(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		errorPage(w, http.StatusBadRequest, a.Issuer(), "redirect_uri is invalid")
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	a.mu.Lock()
	iss, send := a.responseIss, a.sendIss
	a.mu.Unlock()
	switch {
	case !send:
	case iss != "":
		q.Set("iss", iss)
	default:
		q.Set("iss", a.Issuer())
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}
