package fakeoauth

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenReply is the outcome of a token request, written by writeToken.
type tokenReply struct {
	status int
	fields map[string]any // success body
	code   string         // RFC 6749 §5.2 error code
	desc   string
	header http.Header
}

func failed(status int, code, desc string) tokenReply {
	return tokenReply{status: status, code: code, desc: desc}
}

// serveToken is the token endpoint (RFC 6749 §4.4 client_credentials,
// §6 refresh_token, §4.1.3 authorization_code). A request is counted when it arrives, so a client
// that gives up during the artificial latency is still seen trying.
func (a *AuthServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		a.writeToken(w, r, failed(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		a.writeToken(w, r, failed(http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded"))
		return
	}
	entry := TokenRequestLog{
		Time:     time.Now(),
		Grant:    r.PostForm.Get("grant_type"),
		Scope:    r.PostForm.Get("scope"),
		Resource: r.PostForm.Get("resource"),
		Accept:   r.Header.Get("Accept"),

		RefreshToken: r.PostForm.Get("refresh_token"),
	}
	a.mu.Lock()
	a.counts[entry.Grant]++
	latency, hook := a.latency, a.opts.OnTokenRequest
	a.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}

	// A Client ID Metadata Document client not seen at /authorize yet is
	// fetched now, outside the lock.
	if _, _, basic := r.BasicAuth(); !basic {
		a.cimdIfMissing(r.Context(), r.PostForm.Get("client_id"))
	}

	// A private_key_jwt client's JWKS, when stale, is fetched now, outside
	// the lock.
	a.refreshJWKS(r.Context(), r)
	a.refreshIssuerKeys(r.Context(), r) // a trusted IdP's, for ID-JAGs

	// A DPoP proof's signature is checked now, outside the lock; its jti
	// and nonce are judged inside.
	proof := readDPoP(r, a.TokenURL(), "")

	// Everything from here to the answer is one critical section, so
	// concurrent refreshes with one rotating token race as they would at
	// a real server: exactly one wins.
	a.mu.Lock()
	f, injected := a.nextFailure()
	var reply tokenReply
	if injected {
		entry.Injected = true
		entry.ClientID = r.PostForm.Get("client_id")
		if id, _, ok := r.BasicAuth(); ok {
			entry.ClientID, _ = url.QueryUnescape(id)
		}
		a.recordLocked(&entry, f.status, "")
	} else {
		reply = a.tokenDPoP(r, &entry, proof)
		a.recordLocked(&entry, reply.status, reply.code)
	}
	a.mu.Unlock()

	if hook != nil {
		hook(entry)
	}
	if injected {
		f.write(w)
		return
	}
	a.writeToken(w, r, reply)
}

func (a *AuthServer) recordLocked(e *TokenRequestLog, status int, code string) {
	e.Status, e.Error = status, code
	a.log = append(a.log, *e)
}

// grant authenticates the client and runs the grant. The caller holds a.mu.
func (a *AuthServer) grant(r *http.Request, entry *TokenRequestLog) tokenReply {
	auth := a.authenticate(r)
	entry.ClientID, entry.AuthMethod = auth.id, auth.method
	if auth.code != "" {
		reply := failed(auth.status, auth.code, auth.desc)
		if auth.status == http.StatusUnauthorized && auth.method == methodBasic {
			// RFC 6749 §5.2: a 401 after basic auth carries the challenge.
			reply.header = http.Header{"Www-Authenticate": {`Basic realm="fakeoauth"`}}
		}
		return reply
	}
	if a.opts.RejectResource && r.PostForm.Has("resource") && r.PostForm.Has("scope") {
		// Microsoft Entra ID v2 endpoints refuse RFC 8707 resource next
		// to scope with an AADSTS901002-style invalid_request.
		return failed(http.StatusBadRequest, "invalid_request",
			"AADSTS901002: The 'resource' request parameter is not supported. Trace ID: 7f1c Correlation ID: 9a2e")
	}
	requested := strings.Fields(r.PostForm.Get("scope"))
	if reply, ok := a.assertionGrants(auth.id, r.PostForm, requested, entry.Resource); ok {
		return reply // ID-JAG and token exchange (idjag.go)
	}
	switch entry.Grant {
	case "client_credentials":
		if auth.method == methodNone {
			return failed(http.StatusBadRequest, "unauthorized_client", "a public client cannot use client_credentials")
		}
		return a.clientCredentials(auth.id, requested, entry.Resource)
	case "authorization_code":
		return a.authorizationCode(auth.id, r.PostForm, entry.Resource)
	case "refresh_token":
		return a.refreshGrant(auth.id, r.PostForm.Get("refresh_token"), requested, entry.Resource, entry.DPoPKey)
	case GrantJWTBearer:
		return a.jwtBearer(auth.id, r.PostForm.Get("assertion"), requested, entry.Resource)
	case "":
		return failed(http.StatusBadRequest, "invalid_request", "grant_type is missing")
	default:
		return failed(http.StatusBadRequest, "unsupported_grant_type", "grant_type "+entry.Grant+" is not supported")
	}
}

func (a *AuthServer) clientCredentials(id string, requested []string, resource string) tokenReply {
	if allowed := a.clients[id].scopes; len(allowed) > 0 {
		for _, s := range requested {
			if !slices.Contains(allowed, s) {
				return failed(http.StatusBadRequest, "invalid_scope", "scope "+s+" is not allowed for this client")
			}
		}
	}
	at := a.tokens.issueAccess(id, requested, resource, "", "", a.opts.AccessTTL)
	return a.success(at, requested, "")
}

// refreshGrant runs the refresh_token grant; jkt is the thumbprint of the
// request's DPoP key ("" without a proof), which a bound refresh token
// requires.
func (a *AuthServer) refreshGrant(id, presented string, requested []string, resource, jkt string) tokenReply {
	rt := a.tokens.refresh[presented]
	if rt == nil || rt.client != id {
		return failed(http.StatusBadRequest, "invalid_grant", "refresh token is invalid")
	}
	// Reuse is checked before revocation so that every presentation of
	// a spent token counts, even after its family died.
	regrant := rt.spent && a.opts.ReuseGrace > 0 && time.Since(rt.spentAt) < a.opts.ReuseGrace && !a.tokens.revoked[rt.family]
	if regrant {
		a.grace++
	}
	if rt.spent && !regrant {
		a.reuse++
		if a.opts.RevokeFamilyOnReuse {
			a.tokens.revoked[rt.family] = true
		}
		return failed(http.StatusBadRequest, "invalid_grant", "refresh token was already used")
	}
	if a.tokens.revoked[rt.family] {
		return failed(http.StatusBadRequest, "invalid_grant", "refresh token was revoked")
	}
	// After the reuse and revocation checks, so that those count as
	// before; before rotation, so that a wrong key spends nothing.
	if rt.jkt != "" && rt.jkt != jkt {
		return failed(http.StatusBadRequest, "invalid_grant", "refresh token is bound to another DPoP key")
	}
	// A refresh cannot widen scope (RFC 6749 §6); it may narrow it.
	for _, s := range requested {
		if !slices.Contains(rt.scopes, s) {
			return failed(http.StatusBadRequest, "invalid_scope", "a refresh cannot add scope "+s)
		}
	}
	scopes := rt.scopes
	if len(requested) > 0 {
		scopes = requested
	}
	at := a.tokens.issueAccess(id, scopes, resource, rt.family, rt.subject, a.opts.AccessTTL)
	next := ""
	if a.opts.Rotate {
		if !rt.spent {
			rt.spent, rt.spentAt = true, time.Now()
		}
		next = a.tokens.issueRefresh(id, rt.scopes, rt.family, rt.subject)
	}
	return a.success(at, scopes, next)
}

func (a *AuthServer) success(access string, scopes []string, refresh string) tokenReply {
	f := map[string]any{"access_token": access, "token_type": "Bearer", "scope": strings.Join(scopes, " ")}
	if !a.opts.OmitExpiresIn {
		f["expires_in"] = int(a.opts.AccessTTL / time.Second)
	}
	if refresh != "" {
		f["refresh_token"] = refresh
	}
	return tokenReply{status: http.StatusOK, fields: f}
}
