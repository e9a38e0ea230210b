package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// interceptor holds back the responses its hold func selects (up to a size
// limit) so a handler can inspect them, and refresh and replay; every other
// response passes straight to the client, flushes included, so streams are
// not delayed.
//
// Caddy's ResponseRecorder buffers without a bound; a response body is a
// remote document, so this one gives up holding (and passes the response
// through) once it exceeds limit.
type interceptor struct {
	http.ResponseWriter
	buf         bytes.Buffer
	limit       int
	status      int
	wroteHeader bool
	buffering   bool
	// hold selects the responses to hold back, by status and header.
	hold func(status int, header http.Header) bool
}

// maxInterceptedBody bounds a held-back upstream 401/403 (or preset 200)
// body: error bodies are small, and only small JSON is ever inspected.
const maxInterceptedBody = 64 << 10

var interceptorPool = sync.Pool{New: func() any { return new(interceptor) }}

func getInterceptor(w http.ResponseWriter, limit int, hold func(int, http.Header) bool) *interceptor {
	i := interceptorPool.Get().(*interceptor)
	i.ResponseWriter = w
	i.hold = hold
	i.limit = limit
	return i
}

func putInterceptor(i *interceptor) {
	i.ResponseWriter, i.hold = nil, nil
	i.status, i.wroteHeader, i.buffering = 0, false, false
	if i.buf.Cap() > 2*maxNormalizedBody {
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
	if i.hold(status, i.ResponseWriter.Header()) && i.fits() {
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
		if rf, ok := i.ResponseWriter.(io.ReaderFrom); ok {
			return rf.ReadFrom(r)
		}
		return io.Copy(i.ResponseWriter, r)
	}
	return io.Copy(writerOnly{i}, r)
}

// Unwrap returns the writer underneath, for http.ResponseController.
func (i *interceptor) Unwrap() http.ResponseWriter { return i.ResponseWriter }

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
