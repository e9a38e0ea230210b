package fakeoauth

import (
	"fmt"
	"net/http"
	"time"
)

// sseGate holds /sse streams after their first event until the test
// releases them. Guarded by Upstream.mu.
type sseGate struct {
	release chan struct{}
	waiting int
	opened  int
}

func newSSEGate() sseGate { return sseGate{release: make(chan struct{})} }

// ReleaseSSE lets every /sse stream that has sent its first event finish.
// Streams opened afterwards wait for the next ReleaseSSE.
func (u *Upstream) ReleaseSSE() {
	u.mu.Lock()
	defer u.mu.Unlock()
	close(u.sse.release)
	u.sse.release = make(chan struct{})
}

// SSEWaiting is how many /sse streams are open and not yet finished:
// about to send, or having sent, their first event and waiting for
// ReleaseSSE.
func (u *Upstream) SSEWaiting() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sse.waiting
}

// SSEOpened counts /sse streams started.
func (u *Upstream) SSEOpened() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sse.opened
}

// serveSSE writes and flushes `data: {"n":1}`, waits for ReleaseSSE (or
// SSETimeout), then writes `data: {"n":2}` and ends. A client that reads
// the first event before releasing proves each event was forwarded as it
// came, not buffered until the end.
func (u *Upstream) serveSSE(w http.ResponseWriter, r *http.Request) {
	// Take the gate before the first event leaves: a test that saw the
	// event and then releases is sure to release this stream.
	u.mu.Lock()
	release := u.sse.release
	u.sse.opened++
	u.sse.waiting++
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.sse.waiting--
		u.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_, _ = fmt.Fprint(w, "event: message\ndata: {\"n\":1}\n\n")
	_ = rc.Flush()

	timer := time.NewTimer(u.opts.SSETimeout)
	defer timer.Stop()
	select {
	case <-release:
	case <-timer.C:
	case <-r.Context().Done():
		return
	}
	_, _ = fmt.Fprint(w, "event: message\ndata: {\"n\":2}\n\n")
	_ = rc.Flush()
}
