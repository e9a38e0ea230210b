package fakeoauth

import "net/http"

// failure is one injected token endpoint answer.
type failure struct {
	status      int
	body        string
	contentType string
	header      http.Header
}

func (f failure) write(w http.ResponseWriter) {
	for k, v := range f.header {
		w.Header()[http.CanonicalHeaderKey(k)] = v
	}
	if f.contentType != "" {
		w.Header().Set("Content-Type", f.contentType)
	}
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}

// FailNext makes the next n token requests, whatever they ask, answer
// status with body, content type and extra headers (nil for none) before
// any client authentication: a CDN's HTML 502, a 429 with Retry-After, a
// 400 invalid_grant. Calls queue up in order. The requests are counted
// and logged with Injected set.
func (a *AuthServer) FailNext(n, status int, body, contentType string, header http.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range n {
		a.failures = append(a.failures, failure{status, body, contentType, header.Clone()})
	}
}

// PendingFailures is how many injected failures are still queued.
func (a *AuthServer) PendingFailures() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.failures)
}

// nextFailure pops a queued failure. The caller holds a.mu.
func (a *AuthServer) nextFailure() (failure, bool) {
	if len(a.failures) == 0 {
		return failure{}, false
	}
	f := a.failures[0]
	a.failures = a.failures[1:]
	return f, true
}
