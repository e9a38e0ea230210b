package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// The per-user target: one credential per user (grant
// authorization_code, principal from the X-User header), every user
// authorized through the real flow before the rounds, and Zipf-distributed
// traffic (a few users send most requests, as in a team).

// perUserSite is the Caddyfile site of the per-user target.
func perUserSite(port int, upstream string, as *fakeoauth.AuthServer) string {
	return fmt.Sprintf(`
http://127.0.0.1:%d {
	oauth_gateway {
		resource http://%s/
		grant authorization_code
		redirect_uri http://127.0.0.1:%d/.oauth/callback
		principal {http.request.header.X-User}
		issuer %s
		client_id bench
		client_secret bench-secret
		insecure_allow_http
	}
	reverse_proxy %s
}
`, port, upstream, port, as.Issuer(), upstream)
}

// zipfUsers is count user names drawn from users with Zipf s = 1.1.
func zipfUsers(users []string, count int, seed uint64) []string {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed+1)), 1.1, 1, uint64(len(users)-1))
	seq := make([]string, count)
	for i := range seq {
		seq[i] = users[z.Uint64()]
	}
	return seq
}

// runUsers drives u with conc keep-alive workers for d; with users, each
// request's X-User comes from a per-worker Zipf sequence over them.
func runUsers(client *http.Client, u string, users []string, conc int, d time.Duration) result {
	var n, errs atomic.Int64
	lat := make([][]time.Duration, conc)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		var seq []string
		if len(users) > 0 {
			seq = zipfUsers(users, 4096, uint64(w)+1)
		}
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				if seq != nil {
					req.Header.Set("X-User", seq[i%len(seq)])
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return result{requests: n.Load(), errors: errs.Load(), elapsed: time.Since(start), latencies: all}
}
