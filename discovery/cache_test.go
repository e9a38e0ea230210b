package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// metaServer serves, under /meta/<n>, a protected resource metadata
// document naming resource (with %s replaced by the server's URL),
// padded to pad bytes, cacheable for a day. Other paths are HTML.
func metaServer(t *testing.T, resource string, pad int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var srv *httptest.Server
	var hits atomic.Int64
	filler := strings.Repeat("x", pad)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !strings.HasPrefix(r.URL.Path, "/meta/") {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>spa catch-all</html>")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=86400")
		fmt.Fprintf(w, `{"resource":%q,"authorization_servers":["https://as.example"],"resource_name":%q}`,
			strings.ReplaceAll(resource, "%s", srv.URL), filler)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Documents that fail validation are never cached, however long they
// say they may be.
func TestCacheKeepsNoRejectedDocuments(t *testing.T) {
	srv, _ := metaServer(t, "https://other.example/mcp", 100<<10)
	c := localClient()
	for i := range 300 {
		_, _, err := c.ProtectedResource(context.Background(), srv.URL+"/mcp", []string{fmt.Sprintf("%s/meta/%d", srv.URL, i)})
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%d: err = %v, want a *ValidationError", i, err)
		}
	}
	if n := c.cacheBytes(); n != 0 {
		t.Fatalf("cache holds %d body bytes of rejected documents", n)
	}
	if n := c.cacheLen(); n > c.MaxCacheEntries {
		t.Fatalf("cache holds %d entries, more than %d", n, c.MaxCacheEntries)
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		srv, _ := metaServer(t, "%s/mcp", 100<<10)
		c := localClient()
		for i := range 300 {
			u := fmt.Sprintf("%s/meta/%d", srv.URL, i)
			_, from, err := c.ProtectedResource(context.Background(), srv.URL+"/mcp", []string{u})
			if err != nil || from != u {
				t.Fatalf("%d: from %s, err %v", i, from, err)
			}
			if n := c.cacheBytes(); n > c.MaxCacheBytes {
				t.Fatalf("%d: cache holds %d bytes, more than %d", i, n, c.MaxCacheBytes)
			}
			if n := c.cacheLen(); n > c.MaxCacheEntries {
				t.Fatalf("%d: cache holds %d entries, more than %d", i, n, c.MaxCacheEntries)
			}
		}
		if c.MaxCacheBytes != 4<<20 || c.MaxCacheEntries != 64 {
			t.Fatalf("defaults: %d bytes, %d entries", c.MaxCacheBytes, c.MaxCacheEntries)
		}
		if c.cacheBytes() < 3<<20 {
			t.Fatalf("cache holds only %d bytes: evicting too much", c.cacheBytes())
		}
	})
	t.Run("entries", func(t *testing.T) {
		srv, hits := metaServer(t, "%s/mcp", 0)
		c := NewClient(Options{AllowHTTP: true, AllowPrivate: true, MaxCacheEntries: 10})
		get := func(i int) {
			t.Helper()
			if _, _, err := c.ProtectedResource(context.Background(), srv.URL+"/mcp", []string{fmt.Sprintf("%s/meta/%d", srv.URL, i)}); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
		}
		for i := range 300 {
			get(i)
			if n := c.cacheLen(); n > 10 {
				t.Fatalf("%d: cache holds %d entries, more than 10", i, n)
			}
		}
		// The most recent document is still cached; the first is not.
		before := hits.Load()
		get(299)
		if hits.Load() != before {
			t.Fatal("most recent document refetched")
		}
		get(0)
		if hits.Load() != before+1 {
			t.Fatalf("evicted document: %d fetches, want 1", hits.Load()-before)
		}
		// Invalidate drops a cached document.
		before = hits.Load()
		c.Invalidate(fmt.Sprintf("%s/meta/%d", srv.URL, 0))
		get(0)
		if hits.Load() != before+1 {
			t.Fatalf("after Invalidate: %d fetches, want 1", hits.Load()-before)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		srv, hits := metaServer(t, "%s/mcp", 4000)
		c := NewClient(Options{AllowHTTP: true, AllowPrivate: true, MaxCacheBytes: 2000})
		for range 2 {
			if _, _, err := c.ProtectedResource(context.Background(), srv.URL+"/mcp", []string{srv.URL + "/meta/big"}); err != nil {
				t.Fatal(err)
			}
		}
		if hits.Load() != 2 || c.cacheBytes() != 0 {
			t.Fatalf("document over the budget: %d fetches, %d bytes cached", hits.Load(), c.cacheBytes())
		}
	})
}
