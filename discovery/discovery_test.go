package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestProtectedResourceMetadataURLs(t *testing.T) {
	tests := []struct {
		resource string
		want     []string
	}{
		{"https://r.example/mcp", []string{"https://r.example/.well-known/oauth-protected-resource/mcp", "https://r.example/.well-known/oauth-protected-resource"}},
		{"https://r.example/mcp/", []string{"https://r.example/.well-known/oauth-protected-resource/mcp", "https://r.example/.well-known/oauth-protected-resource"}},
		{"https://r.example", []string{"https://r.example/.well-known/oauth-protected-resource"}},
		{"https://r.example/", []string{"https://r.example/.well-known/oauth-protected-resource"}},
		{"https://r.example:8443/a/b?x=1", []string{"https://r.example:8443/.well-known/oauth-protected-resource/a/b?x=1", "https://r.example:8443/.well-known/oauth-protected-resource"}},
	}
	for _, tt := range tests {
		got, err := ProtectedResourceMetadataURLs(tt.resource)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v %v, want %v", tt.resource, got, err, tt.want)
		}
	}
	for _, bad := range []string{"/relative", "ftp://x/y", "https://user:pw@r.example/"} {
		if _, err := ProtectedResourceMetadataURLs(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestAuthorizationServerMetadataURLs(t *testing.T) {
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://as.example/tenant1", []string{
			"https://as.example/.well-known/oauth-authorization-server/tenant1",
			"https://as.example/.well-known/openid-configuration/tenant1",
			"https://as.example/tenant1/.well-known/openid-configuration"}},
		{"https://kc.example.com/realms/r1/", []string{
			"https://kc.example.com/.well-known/oauth-authorization-server/realms/r1",
			"https://kc.example.com/.well-known/openid-configuration/realms/r1",
			"https://kc.example.com/realms/r1/.well-known/openid-configuration"}},
		{"https://as.example", []string{"https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"}},
		{"https://tenant.us.auth0.com/", []string{"https://tenant.us.auth0.com/.well-known/oauth-authorization-server", "https://tenant.us.auth0.com/.well-known/openid-configuration"}},
	}
	for _, tt := range tests {
		got, err := AuthorizationServerMetadataURLs(tt.issuer)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v %v, want %v", tt.issuer, got, err, tt.want)
		}
	}
	for _, bad := range []string{"https://as.example/?tenant=1", "https://as.example/#x", "as.example"} {
		if _, err := AuthorizationServerMetadataURLs(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestResourceMatches(t *testing.T) {
	tests := []struct {
		requested, doc string
		fromRoot       bool
		want           bool
	}{
		{"https://r.example/mcp", "https://r.example/mcp", false, true},
		{"https://r.example/mcp/tools", "https://r.example/mcp", false, true},
		{"https://r.example/mcpx", "https://r.example/mcp", false, false}, // not a segment boundary
		{"https://r.example/mcp", "https://r.example/mcp/", false, true},
		{"https://R.Example:443/mcp", "https://r.example/mcp", false, true},
		{"https://r.example/mcp", "http://r.example/mcp", false, false},
		{"https://r.example/mcp", "https://evil.example/mcp", false, false},
		{"https://r.example/mcp", "https://r.example:8443/mcp", false, false},
		{"https://r.example/mcp", "https://r.example", true, true},
		{"https://r.example/mcp", "https://r.example", false, false},
		{"https://r.example/mcp", "https://r.example/other", false, false},
	}
	for _, tt := range tests {
		if got := ResourceMatches(tt.requested, tt.doc, tt.fromRoot); got != tt.want {
			t.Errorf("ResourceMatches(%q, %q, %v) = %v", tt.requested, tt.doc, tt.fromRoot, got)
		}
	}
}

func TestIssuerMatches(t *testing.T) {
	tests := []struct {
		expected, got string
		want          bool
	}{
		{"https://as.example/t1", "https://as.example/t1", true},
		{"https://as.example", "https://as.example/", true},
		{"https://as.example/t1", "https://as.example/t1/", false},
		{"https://as.example/t1", "https://as.example/t2", false},
		{"https://as.example", "https://evil.example", false},
		{"https://as.example", "http://as.example", false},
	}
	for _, tt := range tests {
		if got := IssuerMatches(tt.expected, tt.got); got != tt.want {
			t.Errorf("IssuerMatches(%q, %q) = %v", tt.expected, tt.got, got)
		}
	}
}

// Real provider documents decode; invalid ones fail closed.
func TestDecodeProviderDocuments(t *testing.T) {
	files, _ := filepath.Glob("testdata/as/*.json")
	if len(files) < 5 {
		t.Fatalf("testdata missing: %v", files)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		m, err := DecodeAuthServerMetadata(b)
		invalid := strings.Contains(f, "missing")
		if invalid != (err != nil) {
			t.Errorf("%s: err %v", f, err)
			continue
		}
		if err == nil && (m.TokenEndpoint == "" || len(m.AuthMethods()) == 0) {
			t.Errorf("%s: %+v", f, m)
		}
	}
	files, _ = filepath.Glob("testdata/prm/*.json")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		m, err := DecodeProtectedResourceMetadata(b)
		invalid := strings.Contains(f, "invalid")
		if invalid != (err != nil) {
			t.Errorf("%s: err %v", f, err)
			continue
		}
		if err == nil && len(m.AuthorizationServers) == 0 {
			t.Errorf("%s: no authorization servers", f)
		}
	}
}

// testServer serves handlers by path and counts requests.
func testServer(t *testing.T, routes map[string]http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h, ok := routes[r.URL.Path]; ok {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>spa catch-all</html>")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func jsonDoc(body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		fmt.Fprint(w, body)
	}
}

func localClient() *Client { return NewClient(Options{AllowHTTP: true, AllowPrivate: true}) }

func TestAuthServerChainWithFallbacks(t *testing.T) {
	var srv *httptest.Server
	srv, _ = testServer(t, map[string]http.HandlerFunc{
		// RFC 8414 path-inserted: a 500, then OIDC path-inserted: HTML
		// (catch-all), then OIDC path-appended: the document.
		"/.well-known/oauth-authorization-server/t1": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) },
		"/t1/.well-known/openid-configuration": func(w http.ResponseWriter, r *http.Request) {
			jsonDoc(`{"issuer":"`+srv.URL+`/t1","token_endpoint":"`+srv.URL+`/t1/token"}`)(w, r)
		},
	})
	m, err := localClient().AuthServer(context.Background(), srv.URL+"/t1")
	if err != nil || m.TokenEndpoint != srv.URL+"/t1/token" {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestAuthServerIssuerMismatchIsNeverUsed(t *testing.T) {
	srv, _ := testServer(t, map[string]http.HandlerFunc{
		"/.well-known/oauth-authorization-server/t1": jsonDoc(`{"issuer":"https://evil.example/t1","token_endpoint":"https://evil.example/token"}`),
	})
	_, err := localClient().AuthServer(context.Background(), srv.URL+"/t1")
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "issuer" {
		t.Fatalf("err = %v", err)
	}
}

func TestProtectedResourceChain(t *testing.T) {
	var srv *httptest.Server
	srv, _ = testServer(t, map[string]http.HandlerFunc{
		"/bad-meta": func(w http.ResponseWriter, r *http.Request) {
			jsonDoc(`{"resource":"https://other.example/mcp","authorization_servers":["https://as.example"]}`)(w, r)
		},
		"/.well-known/oauth-protected-resource/mcp": func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
		"/.well-known/oauth-protected-resource": func(w http.ResponseWriter, r *http.Request) {
			jsonDoc(`{"resource":"`+srv.URL+`","authorization_servers":["https://as.example"]}`)(w, r)
		},
	})
	c := localClient()
	// The challenge's URL names another resource: skipped; the 404 is a
	// miss; the root document (the origin) is accepted.
	m, from, err := c.ProtectedResource(context.Background(), srv.URL+"/mcp", []string{srv.URL + "/bad-meta"})
	if err != nil || m.AuthorizationServers[0] != "https://as.example" || !strings.HasSuffix(from, "/.well-known/oauth-protected-resource") {
		t.Fatalf("%+v %s %v", m, from, err)
	}
}

func TestProtectedResourceOnlyMismatchFailsClosed(t *testing.T) {
	srv, _ := testServer(t, map[string]http.HandlerFunc{
		"/.well-known/oauth-protected-resource/mcp": jsonDoc(`{"resource":"https://other.example/mcp","authorization_servers":["https://as.example"]}`),
	})
	_, _, err := localClient().ProtectedResource(context.Background(), srv.URL+"/mcp", nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "resource" {
		t.Fatalf("err = %v", err)
	}
}

func TestCacheHonoursMaxAgeAndSingleFlight(t *testing.T) {
	var srv *httptest.Server
	doc := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		jsonDoc(`{"issuer":"`+srv.URL+`","token_endpoint":"`+srv.URL+`/token"}`, "Cache-Control", "public, max-age=60")(w, r)
	}
	srv, hits := testServer(t, map[string]http.HandlerFunc{"/.well-known/oauth-authorization-server": doc})
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	c := NewClient(Options{AllowHTTP: true, AllowPrivate: true, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.AuthServer(context.Background(), srv.URL); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if hits.Load() != 1 {
		t.Fatalf("fetches = %d, want 1", hits.Load())
	}
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	_, _ = c.AuthServer(context.Background(), srv.URL)
	if hits.Load() != 2 {
		t.Fatalf("after max-age: fetches = %d, want 2", hits.Load())
	}
}

func TestLimitsAndRedirects(t *testing.T) {
	other := httptest.NewServer(jsonDoc(`{"issuer":"x","token_endpoint":"https://x/t"}`))
	defer other.Close()
	var srv *httptest.Server
	srv, _ = testServer(t, map[string]http.HandlerFunc{
		"/.well-known/oauth-authorization-server/big": jsonDoc(`{"issuer":"` + strings.Repeat("a", 2<<20) + `"}`),
		"/.well-known/oauth-authorization-server/cross": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/.well-known/oauth-authorization-server", http.StatusFound)
		},
	})
	c := localClient()
	if _, err := c.AuthServer(context.Background(), srv.URL+"/big"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("oversized document: %v", err)
	}
	if _, err := c.AuthServer(context.Background(), srv.URL+"/cross"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cross-origin redirect followed: %v", err)
	}
	if _, err := NewClient(Options{}).AuthServer(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "https only") {
		t.Fatalf("http without AllowHTTP: %v", err)
	}
}

func TestPrivateDestinationsBlocked(t *testing.T) {
	srv, hits := testServer(t, map[string]http.HandlerFunc{})
	c := NewClient(Options{AllowHTTP: true})
	_, err := c.AuthServer(context.Background(), srv.URL)
	if !errors.Is(err, ErrBlockedDestination) || hits.Load() != 0 {
		t.Fatalf("err %v, hits %d", err, hits.Load())
	}
	// Allowed by name.
	c = NewClient(Options{AllowHTTP: true, AllowHosts: []string{"127.0.0.1"}})
	if _, err := c.AuthServer(context.Background(), srv.URL); errors.Is(err, ErrBlockedDestination) {
		t.Fatalf("allow-listed host blocked: %v", err)
	}
	for _, a := range []string{"10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1", "fe80::1", "fd00::1", "100.64.0.1", "::ffff:127.0.0.1"} {
		if !IsPrivateAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s not private", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "2606:4700::1"} {
		if IsPrivateAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s private", a)
		}
	}
}

func FuzzDecodeProtectedResourceMetadata(f *testing.F) {
	files, _ := filepath.Glob("testdata/prm/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeProtectedResourceMetadata(b)
		if (m == nil) == (err == nil) {
			t.Fatal("exactly one result expected")
		}
		if m != nil {
			if _, err := ProtectedResourceMetadataURLs(m.Resource); err != nil {
				t.Fatalf("accepted an unusable resource %q", m.Resource)
			}
		}
	})
}

func FuzzDecodeAuthServerMetadata(f *testing.F) {
	files, _ := filepath.Glob("testdata/as/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeAuthServerMetadata(b)
		if (m == nil) == (err == nil) {
			t.Fatal("exactly one result expected")
		}
		if m != nil {
			if _, err := AuthorizationServerMetadataURLs(m.Issuer); err != nil {
				t.Fatalf("accepted an unusable issuer %q: %v", m.Issuer, err)
			}
		}
	})
}
