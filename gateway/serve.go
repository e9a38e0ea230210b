package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Serve injects the credential's token and passes the request on to next. An
// upstream 401 (or a configured vendor equivalent) leads to at most one
// refresh and one replay; a 403 insufficient_scope to at most one step-up
// and one replay.
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request, next Next) error {
	var cred tokenSource = g.cred
	if g.jwksPath != "" && r.URL.Path == g.jwksPath {
		return g.serveJWKS(w)
	}
	if g.exchange != nil {
		cred = &exchangeSource{g: g, subject: g.subjectOf(r)}
	}
	if g.flow != nil {
		if handled, err := g.flow.route(w, r); handled {
			return err
		}
		if g.flow.perUser() {
			principal := g.flow.principalOf(r)
			if principal == "" {
				// Fail closed: never fall back to a shared credential.
				return g.respondNoPrincipal(w)
			}
			cred = g.flow.credential(principal)
		}
	}
	tokenWait := time.Duration(g.TokenWait)
	tok, cached, err := cred.AcquireWithin(r.Context(), tokenWait)
	if cached {
		cacheHits.Inc()
	} else {
		cacheMisses.Inc()
	}
	if err != nil {
		if g.needsAuthorization(err) || g.migrateIfServerChanged(r.Context(), cred, err) {
			return g.respondNeedsAuthorization(w, r)
		}
		if !g.canLearnFromChallenge(err) {
			return g.respondTokenError(w, r, cred, err)
		}
		// Nothing found at the well-known URLs: send the request without
		// a token and learn where tokens come from from the upstream's
		// 401 challenge (MCP), then replay with one.
		tok = nil
	}

	if _, ok := r.Header["Connection"]; ok {
		keepInjectedHeaders(r.Header)
	}
	body, replayable, reserved, err := g.replayBody(r)
	if err != nil {
		return &HTTPError{Status: http.StatusBadRequest, Err: fmt.Errorf("reading request body: %w", err)}
	}
	if reserved > 0 {
		defer releaseReplay(reserved)
	}
	// The upstream's headers land in w.Header() even when its response is
	// held back; a replay must start from what was there before.
	origHeader := w.Header().Clone()

	refreshed, steppedUp, nonceRetried := false, false, false
	for {
		if tok != nil {
			r.Header["Authorization"] = []string{tok.HeaderValue()}
			if g.dpop != nil {
				if err := g.dpop.setHeaders(r, tok); err != nil {
					return &HTTPError{Status: http.StatusInternalServerError, Err: fmt.Errorf("signing a DPoP proof: %w", err)}
				}
			}
		} else {
			delete(r.Header, "Authorization")
			delete(r.Header, dpopHeader)
		}
		switch {
		case body == nil:
		case len(body) == 0:
			r.Body, r.ContentLength = http.NoBody, 0
		default:
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}

		ic := getInterceptor(w, maxInterceptedBody, g.holdFn)
		err := next.ServeHTTP(ic, r)
		if err != nil || !ic.Buffered() {
			if err == nil && tok != nil {
				tok.MarkAccepted() // refresh.go: a later rejection is a revocation
			}
			putInterceptor(ic)
			if g.dpop != nil && err == nil {
				g.dpop.learnNonce(0, w.Header()) // nonces may come on any answer
			}
			return err
		}

		if g.dpop != nil && tok != nil && tok.Key != nil && g.dpop.learnNonce(ic.Status(), w.Header()) && !nonceRetried && replayable {
			// The upstream wants a proof with its nonce (RFC 9449 §9):
			// one replay with the same token and a new proof.
			gatewayMetrics.replays.WithLabelValues("dpop_nonce").Inc()
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			nonceRetried = true
			r = g.beforeReplay(r)
			continue
		}
		verdict := normalize.Upstream(ic.Status(), w.Header(), ic.Body(), g.UpstreamErrors)
		if !verdict.InvalidToken && tok != nil {
			tok.MarkAccepted()
		}
		switch {
		case verdict.InvalidToken && !refreshed:
			failed := ""
			if tok != nil {
				failed = tok.AccessToken
			}
			if g.resolver.noteChallenge(w.Header()) {
				cred.ResetBackoff() // new metadata may fix a failed discovery
			} else if tok != nil && tok.Accepted() {
				// refresh.go: a token that served and is now rejected was
				// revoked, or the resource moved: look at its metadata again.
				g.resolver.revalidate()
			}
			if !replayable {
				// The body is gone: the client sees this 401, and the
				// next request gets a fresh token.
				g.invalidateInBackground(cred, failed)
				return g.passThrough(w, ic)
			}
			newTok, rerr := g.invalidate(r, cred, failed, tokenWait)
			if errors.Is(rerr, tokenstore.ErrRejectedAgain) {
				// The upstream rejects tokens as fast as they come: tell
				// the client the truth instead of asking for more.
				gatewayMetrics.rejectedAgain.Inc()
				g.logger.Warn("upstream rejected a token obtained moments ago after a rejection; passing the 401 on instead of refreshing again",
					zap.String("credential", cred.ID()))
				return g.passThrough(w, ic)
			}
			if rerr != nil {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				if g.needsAuthorization(rerr) || g.migrateIfServerChanged(r.Context(), cred, rerr) {
					// The first read learned the JSON-RPC id: answer
					// with it (restoreBody), as on the first pass.
					return g.respondNeedsAuthorization(w, restoreBody(r, body))
				}
				return g.respondTokenError(w, r, cred, rerr)
			}
			g.debugReplay("upstream rejected the token; replaying with a new one", cred, r, newTok, tok)
			gatewayMetrics.replays.WithLabelValues("unauthorized").Inc()
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			tok, refreshed = newTok, true
			r = g.beforeReplay(r)
			continue

		case verdict.InsufficientScope && !steppedUp:
			want := strings.Fields(verdict.Scope)
			if !replayable || len(want) == 0 || tok == nil {
				return g.passThrough(w, ic)
			}
			if g.flow != nil && tok.HasScopes(want) {
				// The token holds every scope asked for: another consent
				// cannot help (a loop: SEP-2350's limit); the client gets
				// the upstream's answer.
				return g.passThrough(w, ic)
			}
			outside := g.scopes.outsideBound(r.Context(), want)
			if len(outside) > 0 && g.Grant == tokenstore.GrantClientCredentials {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				return g.respondStepUpError(w, cred, tok, want, fmt.Errorf("%w: %s", errScopeNotAllowed, strings.Join(outside, " ")))
			}
			ctx, cancel := context.WithTimeout(r.Context(), tokenWait)
			newTok, serr := cred.StepUp(ctx, want, tok.AccessToken)
			cancel()
			if serr != nil {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				if g.flow != nil && errors.Is(serr, tokenstore.ErrScopeNotGrantable) && len(outside) == 0 {
					// A user's consent can widen scope where a refresh
					// cannot: ask for the union of what the token holds
					// and what the upstream wants (SEP-2350).
					return g.respondNeedsAuthorization(w, restoreBody(r, body), tokenstore.UnionScopes(tok.Scopes, want)...)
				}
				return g.respondStepUpError(w, cred, tok, want, serr)
			}
			gatewayMetrics.stepUps.WithLabelValues("granted").Inc()
			gatewayMetrics.replays.WithLabelValues("insufficient_scope").Inc()
			g.debugReplay("upstream wants more scope; replaying with a stepped-up token", cred, r, newTok, tok)
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			tok, steppedUp = newTok, true
			r = g.beforeReplay(r)
			continue
		}
		return g.passThrough(w, ic)
	}
}

// hold selects the upstream responses held back for inspection: 401 and
// 403, and with upstream_errors presets a JSON 200 (which such upstreams
// use for token errors). Everything else streams.
func (g *Gateway) hold(status int, header http.Header) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusOK:
		return len(g.UpstreamErrors) > 0 && isJSON(header.Get("Content-Type"))
	}
	return false
}

// passThrough sends the held-back response to the client. A 401 without
// a Bearer challenge gets one, with an RFC 6750 JSON body, so standard
// clients understand it.
func (g *Gateway) passThrough(w http.ResponseWriter, ic *interceptor) error {
	defer putInterceptor(ic)
	if ic.Status() == http.StatusUnauthorized && !hasBearerChallenge(w.Header()) {
		desc := "the upstream rejected the gateway's access token"
		body := normalize.ErrorJSON(&normalize.Error{Code: "invalid_token", Description: desc})
		hdr := w.Header()
		hdr.Add("WWW-Authenticate", normalize.BearerChallenge("invalid_token", desc, "", ""))
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "no-store")
		hdr.Del("Content-Length")
		hdr.Del("Content-Encoding")
		w.WriteHeader(http.StatusUnauthorized)
		_, err := w.Write(body)
		return err
	}
	return ic.release()
}

// respondStepUpError explains a scope the gateway could not obtain.
func (g *Gateway) respondStepUpError(w http.ResponseWriter, cred tokenSource, tok *tokenstore.Token, want []string, err error) error {
	need := strings.Join(want, " ")
	all := strings.Join(tokenstore.UnionScopes(tok.Scopes, want), " ")
	desc := fmt.Sprintf("the upstream requires scope %q; the authorization server refused to grant it to the gateway", need)
	outcome := "refused"
	switch {
	case errors.Is(err, tokenstore.ErrScopeNotGrantable):
		outcome = "not_grantable"
		desc = fmt.Sprintf("the upstream requires scope %q, which the gateway's refresh-token credential cannot obtain by refreshing (RFC 6749 section 6); an operator must re-authorize it with scopes %q",
			need, all)
	case errors.Is(err, errScopeNotAllowed), errors.Is(err, tokenstore.ErrScopeLimit):
		outcome = "not_allowed"
		desc = "the upstream requires a scope outside those this gateway may request for it (scope, max_scope, or the resource's scopes_supported); an operator must allow it with max_scope"
		all = strings.Join(g.Scopes, " ")
	}
	gatewayMetrics.stepUps.WithLabelValues(outcome).Inc()
	g.logger.Warn("step-up failed", zap.String("credential", cred.ID()), zap.String("outcome", outcome),
		zap.Strings("scopes", want), zap.String("reason", serverCode(err, "")))
	hdr := w.Header()
	hdr.Set("WWW-Authenticate", normalize.BearerChallenge("insufficient_scope", desc, all, ""))
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusForbidden)
	_, werr := w.Write(normalize.ErrorJSON(&normalize.Error{Code: "insufficient_scope", Description: desc}))
	return werr
}

func (g *Gateway) debugReplay(msg string, cred tokenSource, r *http.Request, newTok, old *tokenstore.Token) {
	if c := g.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.String("credential", cred.ID()), zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.Uint64("generation", newTok.Generation),
			zap.Bool("token_changed", old == nil || newTok.AccessToken != old.AccessToken))
	}
}

// respondNoPrincipal: per-user credentials and no user on the request.
func (g *Gateway) respondNoPrincipal(w http.ResponseWriter) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, err := w.Write([]byte(`{"error":"authorization_required","error_description":"the request carries no user (the principal placeholder is empty); authenticate to the gateway first"}` + "\n"))
	return err
}

// errScopeNotAllowed: an upstream asked for a scope outside the step-up
// bound.
var errScopeNotAllowed = errors.New("scope outside the step-up bound")

// restoreBody gives r its buffered body again (nil: none was held), so
// an answer can read what the upstream's attempt consumed.
func restoreBody(r *http.Request, body []byte) *http.Request {
	if body != nil {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	return r
}

// resetHeader makes dst equal to src again.
func resetHeader(dst, src http.Header) {
	for k := range dst {
		delete(dst, k)
	}
	for k, v := range src {
		dst[k] = v
	}
}
