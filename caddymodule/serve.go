package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// ServeHTTP injects the credential's token and passes the request on. An
// upstream 401 leads to at most one refresh and one replay.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	tok, err := h.cred.Token(r.Context())
	if err != nil {
		return h.respondTokenError(w, r, err)
	}

	body, replayable, err := h.replayBody(r)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
	}
	// The upstream's headers land in w.Header() even when its response is
	// held back; a replay must start from what was there before.
	origHeader := w.Header().Clone()

	refreshed := false
	for {
		r.Header["Authorization"] = []string{tok.HeaderValue()}
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}

		ic := getInterceptor(w)
		err := next.ServeHTTP(ic, r)
		if err != nil || !ic.Buffered() {
			putInterceptor(ic)
			return err
		}

		if ic.Status() == http.StatusUnauthorized && !refreshed {
			if !replayable {
				// The body is gone; the client sees this 401, and the
				// next request gets a fresh token.
				h.invalidateInBackground(tok.AccessToken)
				err := ic.release()
				putInterceptor(ic)
				return err
			}
			newTok, rerr := h.cred.Invalidate(r.Context(), tok.AccessToken)
			if rerr != nil {
				putInterceptor(ic)
				resetHeader(w.Header(), origHeader)
				return h.respondTokenError(w, r, rerr)
			}
			if c := h.logger.Check(zapcore.DebugLevel, "upstream rejected the token; replaying with a new one"); c != nil {
				c.Write(zap.String("credential", h.cred.ID()), zap.String("method", r.Method),
					zap.String("path", r.URL.Path), zap.Uint64("generation", newTok.Generation),
					zap.Bool("token_changed", newTok.AccessToken != tok.AccessToken))
			}
			putInterceptor(ic)
			resetHeader(w.Header(), origHeader)
			tok, refreshed = newTok, true
			continue
		}

		err = ic.release()
		putInterceptor(ic)
		return err
	}
}

// replayBody buffers a request body of known length up to MaxReplayBody
// so it can be sent again. Anything else streams and is not replayable.
func (h *Handler) replayBody(r *http.Request) (body []byte, replayable bool, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true, nil
	}
	if r.ContentLength < 0 || r.ContentLength > h.MaxReplayBody {
		return nil, false, nil
	}
	body = make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		return nil, false, err
	}
	return body, true, nil
}

// invalidateInBackground refreshes after a 401 that cannot be replayed,
// so the client's retry finds a new token.
func (h *Handler) invalidateInBackground(failed string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), refreshWait)
		defer cancel()
		if _, err := h.cred.Invalidate(ctx, failed); err != nil {
			h.logger.Debug("refresh after unreplayable 401 failed", zap.String("credential", h.cred.ID()), zap.Error(err))
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
