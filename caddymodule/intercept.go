package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// interceptor holds back 401 and 403 responses (up to a size limit) so the
// handler can refresh and replay; every other response passes straight to
// the client, flushes included, so streams are not delayed.
//
// Caddy's ResponseRecorder buffers without a bound; an upstream error body
// is a remote document, so this one gives up intercepting (and passes the
// response through) once it exceeds limit.
type interceptor struct {
	caddyhttp.ResponseWriterWrapper
	buf         bytes.Buffer
	limit       int
	status      int
	wroteHeader bool
	buffering   bool
}

// maxInterceptedBody bounds a held-back 401/403 body.
const maxInterceptedBody = 64 << 10

var interceptorPool = sync.Pool{New: func() any { return new(interceptor) }}

func getInterceptor(w http.ResponseWriter) *interceptor {
	i := interceptorPool.Get().(*interceptor)
	i.ResponseWriter = w
	i.limit = maxInterceptedBody
	return i
}

func putInterceptor(i *interceptor) {
	i.ResponseWriter = nil
	i.status, i.wroteHeader, i.buffering = 0, false, false
	if i.buf.Cap() > maxInterceptedBody*2 {
		i.buf = bytes.Buffer{}
	}
	i.buf.Reset()
	interceptorPool.Put(i)
}

// WriteHeader implements http.ResponseWriter.
func (i *interceptor) WriteHeader(status int) {
	if i.wroteHeader {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		// Informational responses (103 Early Hints) go through; the
		// final status is still to come.
		i.ResponseWriter.WriteHeader(status)
		return
	}
	i.wroteHeader = true
	i.status = status
	if (status == http.StatusUnauthorized || status == http.StatusForbidden) && i.fits() {
		i.buffering = true
		return
	}
	i.ResponseWriter.WriteHeader(status)
}

// fits reports whether the declared length (if any) is within the limit.
func (i *interceptor) fits() bool {
	cl := i.ResponseWriter.Header().Get("Content-Length")
	if cl == "" {
		return true
	}
	n, err := strconv.ParseInt(cl, 10, 64)
	return err == nil && n <= int64(i.limit)
}

// Write implements http.ResponseWriter.
func (i *interceptor) Write(p []byte) (int, error) {
	if !i.wroteHeader {
		i.WriteHeader(http.StatusOK)
	}
	if !i.buffering {
		return i.ResponseWriter.Write(p)
	}
	if i.buf.Len()+len(p) > i.limit {
		// Too big to hold: stop intercepting and pass it on as it is.
		if err := i.release(); err != nil {
			return 0, err
		}
		return i.ResponseWriter.Write(p)
	}
	return i.buf.Write(p)
}

// ReadFrom keeps io.Copy from bypassing Write while buffering.
func (i *interceptor) ReadFrom(r io.Reader) (int64, error) {
	if i.wroteHeader && !i.buffering {
		return i.ResponseWriterWrapper.ReadFrom(r)
	}
	return io.Copy(writerOnly{i}, r)
}

// FlushError is a no-op while buffering: flushing would commit the status.
func (i *interceptor) FlushError() error {
	if i.buffering {
		return nil
	}
	if !i.wroteHeader {
		i.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(i.ResponseWriter).Flush()
}

// Buffered reports whether a 401/403 is being held back.
func (i *interceptor) Buffered() bool { return i.buffering }

// Status returns the status the upstream answered with.
func (i *interceptor) Status() int { return i.status }

// Body returns the held-back body.
func (i *interceptor) Body() []byte { return i.buf.Bytes() }

// release sends the held-back response to the client.
func (i *interceptor) release() error {
	i.buffering = false
	i.ResponseWriter.WriteHeader(i.status)
	if i.buf.Len() == 0 {
		return nil
	}
	_, err := i.ResponseWriter.Write(i.buf.Bytes())
	return err
}

// writerOnly hides ReadFrom so io.Copy uses Write.
type writerOnly struct{ io.Writer }
