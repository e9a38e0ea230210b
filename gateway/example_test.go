package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"

	"github.com/oauthgw/caddy-oauth-gateway/gateway"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// The gateway in front of net/http/httputil.ReverseProxy, without Caddy:
// the client sends no token; the upstream receives the gateway's.
func ExampleGateway_Handler() {
	// A token endpoint (client credentials) and an upstream that wants
	// its token.
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at-1","token_type":"Bearer","expires_in":3600}`)
	}))
	defer as.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer at-1" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "hello from the upstream\n")
	}))
	defer upstream.Close()

	manager, err := tokenstore.NewManager(tokenstore.NewMemoryBackend(), nil, nil, tokenstore.Options{})
	if err != nil {
		panic(err)
	}
	defer manager.Close()
	gw, err := gateway.New(gateway.Config{
		Resource:          upstream.URL + "/mcp",
		TokenEndpoint:     as.URL + "/token",
		ClientID:          "gateway",
		ClientSecret:      "s3cret",
		InsecureAllowHTTP: true, // the test servers speak http
	}, gateway.Options{Manager: manager})
	if err != nil {
		panic(err)
	}
	defer gw.Close()
	target, _ := url.Parse(upstream.URL)
	front := httptest.NewServer(gw.Handler(httputil.NewSingleHostReverseProxy(target)))
	defer front.Close()

	resp, err := http.Get(front.URL + "/mcp")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 hello from the upstream
}
