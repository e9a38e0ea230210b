package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/normalize"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// ServeHTTP injects the credential's token and passes the request on. An
// upstream 401 (or a configured vendor equivalent) leads to at most one
// refresh and one replay; a 403 insufficient_scope to at most one step-up
// and one replay.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var cred tokenSource = h.cred
	if h.jwksPath != "" && r.URL.Path == h.jwksPath {
		return h.serveJWKS(w)
	}
	if h.exchange != nil {
		cred = &exchangeSource{h: h, subject: h.subjectOf(r)}
	}
	if h.flow != nil {
		if handled, err := h.flow.route(w, r); handled {
			return err
		}
		if h.flow.perUser() {
			principal := h.flow.principalOf(r)
			if principal == "" {
				// Fail closed: never fall back to a shared credential.
				return h.respondNoPrincipal(w)
			}
			cred = h.flow.credential(principal)
		}
	}
	tokenWait := time.Duration(h.TokenWait)
	tok, cached, err := cred.AcquireWithin(r.Context(), tokenWait)
	if cached {
		cacheHits.Inc()
	} else {
		cacheMisses.Inc()
	}
	if err != nil {
		if h.needsAuthorization(err) {
			return h.respondNeedsAuthorization(w, r)
		}
		if !h.canLearnFromChallenge(err) {
			return h.respondTokenError(w, r, cred, err)
		}
		// Nothing found at the well-known URLs: send the request without
		// a token and learn where tokens come from from the upstream's
		// 401 challenge (MCP), then replay with one.
		tok = nil
	}

	body, replayable, reserved, err := h.replayBody(r)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
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
			if h.dpop != nil {
				if err := h.dpop.setHeaders(r, tok); err != nil {
					return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing a DPoP proof: %w", err))
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

		ic := getInterceptor(w, maxInterceptedBody, h.holdFn)
		err := next.ServeHTTP(ic, r)
		if err != nil || !ic.Buffered() {
			putInterceptor(ic)
			if h.dpop != nil && err == nil {
				h.dpop.learnNonce(0, w.Header()) // nonces may come on any answer
			}
			return err
		}

		if h.dpop != nil && tok != nil && tok.Key != nil && h.dpop.learnNonce(ic.Status(), w.Header()) && !nonceRetried && replayable {
			// The upstream wants a proof with its nonce (RFC 9449 §9):
			// one replay with the same token and a new proof.
			gatewayMetrics.replays.WithLabelValues("dpop_nonce").Inc()
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			nonceRetried = true
			r = withFreshVars(r)
			continue
		}
		verdict := normalize.Upstream(ic.Status(), w.Header(), ic.Body(), h.UpstreamErrors)
		switch {
		case verdict.InvalidToken && !refreshed:
			failed := ""
			if tok != nil {
				failed = tok.AccessToken
			}
			if h.resolver.noteChallenge(w.Header()) {
				cred.ResetBackoff() // new metadata may fix a failed discovery
			}
			if !replayable {
				// The body is gone: the client sees this 401, and the
				// next request gets a fresh token.
				h.invalidateInBackground(cred, failed)
				return h.passThrough(w, ic)
			}
			newTok, rerr := h.invalidate(r, cred, failed, tokenWait)
			if errors.Is(rerr, tokenstore.ErrRejectedAgain) {
				// The upstream rejects tokens as fast as they come: tell
				// the client the truth instead of asking for more.
				gatewayMetrics.rejectedAgain.Inc()
				h.logger.Warn("upstream rejected a token obtained moments ago after a rejection; passing the 401 on instead of refreshing again",
					zap.String("credential", cred.ID()))
				return h.passThrough(w, ic)
			}
			if rerr != nil {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				if h.needsAuthorization(rerr) {
					return h.respondNeedsAuthorization(w, r)
				}
				return h.respondTokenError(w, r, cred, rerr)
			}
			h.debugReplay("upstream rejected the token; replaying with a new one", cred, r, newTok, tok)
			gatewayMetrics.replays.WithLabelValues("unauthorized").Inc()
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			tok, refreshed = newTok, true
			r = withFreshVars(r)
			continue

		case verdict.InsufficientScope && !steppedUp:
			want := strings.Fields(verdict.Scope)
			if !replayable || len(want) == 0 || tok == nil {
				return h.passThrough(w, ic)
			}
			outside := h.scopesOutsideBound(want)
			if len(outside) > 0 && h.Grant == tokenstore.GrantClientCredentials {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				return h.respondStepUpError(w, cred, tok, want, fmt.Errorf("%w: %s", errScopeNotAllowed, strings.Join(outside, " ")))
			}
			ctx, cancel := context.WithTimeout(r.Context(), tokenWait)
			newTok, serr := cred.StepUp(ctx, want, tok.AccessToken)
			cancel()
			if serr != nil {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				if h.flow != nil && errors.Is(serr, tokenstore.ErrScopeNotGrantable) && len(outside) == 0 {
					// A user's consent can widen scope where a refresh
					// cannot: ask for the union.
					return h.respondNeedsAuthorization(w, r, want...)
				}
				return h.respondStepUpError(w, cred, tok, want, serr)
			}
			gatewayMetrics.stepUps.WithLabelValues("granted").Inc()
			gatewayMetrics.replays.WithLabelValues("insufficient_scope").Inc()
			h.debugReplay("upstream wants more scope; replaying with a stepped-up token", cred, r, newTok, tok)
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			tok, steppedUp = newTok, true
			r = withFreshVars(r)
			continue
		}
		return h.passThrough(w, ic)
	}
}

// hold selects the upstream responses held back for inspection: 401 and
// 403, and with upstream_errors presets a JSON 200 (which such upstreams
// use for token errors). Everything else streams.
func (h *Handler) hold(status int, header http.Header) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusOK:
		return len(h.UpstreamErrors) > 0 && isJSON(header.Get("Content-Type"))
	}
	return false
}

// passThrough sends the held-back response to the client. A 401 without
// a Bearer challenge gets one, with an RFC 6750 JSON body, so standard
// clients understand it.
func (h *Handler) passThrough(w http.ResponseWriter, ic *interceptor) error {
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
func (h *Handler) respondStepUpError(w http.ResponseWriter, cred tokenSource, tok *tokenstore.Token, want []string, err error) error {
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
		all = strings.Join(h.Scopes, " ")
	}
	gatewayMetrics.stepUps.WithLabelValues(outcome).Inc()
	h.logger.Warn("step-up failed", zap.String("credential", cred.ID()), zap.String("outcome", outcome),
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

func (h *Handler) debugReplay(msg string, cred tokenSource, r *http.Request, newTok, old *tokenstore.Token) {
	if c := h.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.String("credential", cred.ID()), zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.Uint64("generation", newTok.Generation),
			zap.Bool("token_changed", old == nil || newTok.AccessToken != old.AccessToken))
	}
}

// canLearnFromChallenge reports whether a failed token acquisition may be
// fixed by the upstream's challenge: discovery from the resource found
// nothing, and no endpoint or issuer is configured.
func (h *Handler) canLearnFromChallenge(err error) bool {
	return h.TokenEndpoint == "" && h.Issuer == "" && errors.Is(err, discovery.ErrNotFound)
}

// invalidate refreshes after an upstream 401, waiting at most wait.
func (h *Handler) invalidate(r *http.Request, cred tokenSource, failed string, wait time.Duration) (*tokenstore.Token, error) {
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	return cred.Invalidate(ctx, failed)
}

// needsAuthorization: an authorization-code credential without a usable
// refresh token (never authorized, rejected for good, revoked) goes back
// to the user's consent rather than failing.
func (h *Handler) needsAuthorization(err error) bool {
	if h.flow == nil {
		return false
	}
	return errors.Is(err, tokenstore.ErrNeedsAuthorization) || errors.Is(err, tokenstore.ErrDead)
}

// respondNoPrincipal: per-user credentials and no user on the request.
func (h *Handler) respondNoPrincipal(w http.ResponseWriter) error {
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

// scopesOutsideBound returns the scopes in want that step-up may not ask
// for: those outside max_scope, or without it, outside the configured
// scopes and the resource's scopes_supported.
func (h *Handler) scopesOutsideBound(want []string) []string {
	bound := h.MaxScope
	if len(bound) == 0 {
		bound = tokenstore.UnionScopes(h.Scopes, h.resolver.resourceScopes())
	}
	var outside []string
	for _, s := range want {
		if !slices.Contains(bound, s) {
			outside = append(outside, s)
		}
	}
	return outside
}

// invalidateInBackground refreshes after a 401 that cannot be replayed,
// so the client's retry finds a new token.
func (h *Handler) invalidateInBackground(cred tokenSource, failed string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), refreshWait)
		defer cancel()
		if _, err := cred.Invalidate(ctx, failed); err != nil {
			h.logger.Debug("refresh after an unreplayable 401 failed", zap.String("credential", cred.ID()), zap.Error(err))
		}
	}()
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

// withFreshVars gives a replayed request its own copy of Caddy's request
// variables. The first attempt's transport may still be dialing in a
// goroutine of its own, reading the variables (reverse_proxy's dialer
// looks up a proxy variable), while the replay's reverse_proxy writes
// them: without the copy that is a data race inside Caddy.
func withFreshVars(r *http.Request) *http.Request {
	vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if !ok {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, maps.Clone(vars)))
}
