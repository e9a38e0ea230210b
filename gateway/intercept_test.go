package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func hold401(status int, _ http.Header) bool { return status == http.StatusUnauthorized }

func TestInterceptorHoldsOnlySelectedResponses(t *testing.T) {
	rec := httptest.NewRecorder()
	ic := getInterceptor(rec, 64, hold401)
	ic.WriteHeader(http.StatusUnauthorized)
	_, _ = ic.Write([]byte("denied"))
	_ = ic.FlushError()
	if !ic.Buffered() || rec.Code != 200 || rec.Body.Len() != 0 || rec.Flushed {
		t.Fatalf("401 reached the client: buffered=%v code=%d body=%q", ic.Buffered(), rec.Code, rec.Body)
	}
	if string(ic.Body()) != "denied" {
		t.Fatalf("held body %q", ic.Body())
	}
	putInterceptor(ic)

	rec = httptest.NewRecorder()
	ic = getInterceptor(rec, 64, hold401)
	ic.WriteHeader(http.StatusOK)
	_, _ = ic.Write([]byte("data: 1\n\n"))
	_ = ic.FlushError()
	if ic.Buffered() || rec.Code != 200 || rec.Body.String() != "data: 1\n\n" || !rec.Flushed {
		t.Fatalf("200 was held: code=%d body=%q flushed=%v", rec.Code, rec.Body, rec.Flushed)
	}
	putInterceptor(ic)
}

func TestInterceptorReleasesOversizedBodies(t *testing.T) {
	rec := httptest.NewRecorder()
	ic := getInterceptor(rec, 16, hold401)
	ic.WriteHeader(http.StatusUnauthorized)
	big := strings.Repeat("x", 40)
	// io.Copy must go through Write, not around it.
	if _, err := io.Copy(ic, bytes.NewReader([]byte(big))); err != nil {
		t.Fatal(err)
	}
	if ic.Buffered() || rec.Code != http.StatusUnauthorized || rec.Body.String() != big {
		t.Fatalf("oversized 401: buffered=%v code=%d len=%d", ic.Buffered(), rec.Code, rec.Body.Len())
	}
	putInterceptor(ic)

	rec = httptest.NewRecorder()
	rec.Header().Set("Content-Length", "1000")
	ic = getInterceptor(rec, 16, hold401)
	ic.WriteHeader(http.StatusUnauthorized)
	if ic.Buffered() || rec.Code != http.StatusUnauthorized {
		t.Fatal("a declared oversized 401 was held")
	}
	putInterceptor(ic)
}
