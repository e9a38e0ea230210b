package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/gateway"
	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Issue 21: the gateway core needs no Caddy. In front of
// httputil.ReverseProxy, with the fake authorization server and MCP-style
// upstream the Caddy tests use: discovery, injection, a 401 replay after
// a revocation, and a POST body replayed intact, under concurrency.
func TestCoreUnderReverseProxy(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	m, err := tokenstore.NewManager(tokenstore.NewMemoryBackend(), nil, zap.NewNop(), tokenstore.Options{DecodeKey: gateway.DecodeDPoPKey})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gw, err := gateway.New(gateway.Config{
		Resource:            e.up.Resource(),
		ClientID:            e.clientID,
		ClientSecret:        e.clientSecret,
		DiscoveryAllowHosts: []string{"127.0.0.1"},
		InsecureAllowHTTP:   true,
	}, gateway.Options{Manager: m})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	target, _ := url.Parse(e.up.URL())
	front := httptest.NewServer(gw.Handler(httputil.NewSingleHostReverseProxy(target)))
	defer front.Close()

	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := 0; i < 100; i++ {
		if i == 50 {
			e.as.InvalidateAccessTokens() // mid-run: 401s, one refresh, replays
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := testClient.Post(front.URL+"/echo", "application/x-www-form-urlencoded", strings.NewReader("n=1"))
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var echo struct {
				Length int `json:"length"`
			}
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&echo) != nil || echo.Length != 3 {
				errs <- resp.Status
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if n := e.as.TokenRequests(""); n < 1 || n > 2 {
		t.Errorf("token requests = %d, want 1 or 2 (one refresh after the revocation)", n)
	}
}
