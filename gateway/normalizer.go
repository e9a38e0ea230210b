package gateway

import (
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
)

// maxNormalizedBody bounds a held-back authorization server response.
const maxNormalizedBody = 1 << 20

// holdNonStreaming holds every final response except event streams.
func holdNonStreaming(_ int, h http.Header) bool {
	return !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// Normalize passes a request to an authorization server (next) and
// rewrites a non-standard error response into RFC 6749 §5.2 form: any
// `error` member means failure whatever the status, vendor codes are
// mapped to standard ones (aliases over the built-in table), and the
// client receives 400 (401 with a Basic challenge for invalid_client),
// JSON and `Cache-Control: no-store`. Only POST responses up to 1 MiB
// are held back; successes pass byte-identical, everything else streams.
func Normalize(w http.ResponseWriter, r *http.Request, next Next, aliases map[string]string, logger *zap.Logger) error {
	if r.Method != http.MethodPost {
		return next.ServeHTTP(w, r)
	}
	ic := getInterceptor(w, maxNormalizedBody, holdNonStreaming)
	defer putInterceptor(ic)
	if err := next.ServeHTTP(ic, r); err != nil {
		return err
	}
	if !ic.Buffered() {
		return nil
	}
	status, body, changed := normalize.Rewrite(ic.Status(), w.Header(), ic.Body(), aliases)
	if !changed {
		return ic.release()
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Pragma", "no-cache")
	hdr.Del("Content-Encoding")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	if status == http.StatusUnauthorized {
		hdr.Set("WWW-Authenticate", `Basic realm="oauth"`)
	}
	if logger != nil {
		logger.Debug("normalized authorization server error",
			zap.Int("upstream_status", ic.Status()), zap.Int("status", status), zap.String("path", r.URL.Path))
	}
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}
