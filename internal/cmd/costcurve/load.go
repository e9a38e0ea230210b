package main

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator. The users and their authorization flow are
// internal/benchflow's, shared with loadbench.

// load drives urls (worker w uses urls[w%len(urls)]) with conc keep-alive
// workers; each request names a user in X-User, chosen by pick.
type load struct {
	client *http.Client
	urls   []string
	users  []string
	pick   string // uniform, zipf, cyclic (every worker takes the next user in turn)
	conc   int
	next   atomic.Int64 // cyclic position
	// seen, when set, marks each user requested (for credentials in use).
	seen []atomic.Bool
}

type result struct {
	requests, errors int64
	elapsed          time.Duration
	cpu              time.Duration // Caddy CPU time during the run, all instances
	latencies        []time.Duration
}

func (l *load) run(d time.Duration) result {
	var n, errs atomic.Int64
	lat := make([][]time.Duration, l.conc)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < l.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := l.urls[w%len(l.urls)]
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(time.Now().UnixNano())))
			var z *rand.Zipf
			if l.pick == "zipf" && len(l.users) > 1 {
				z = rand.NewZipf(rng, 1.1, 1, uint64(len(l.users)-1))
			}
			for ctx.Err() == nil {
				i := -1
				switch {
				case len(l.users) == 0:
				case l.pick == "cyclic":
					i = int(l.next.Add(1)-1) % len(l.users)
				case z != nil:
					i = int(z.Uint64())
				default:
					i = rng.IntN(len(l.users))
				}
				t0 := time.Now()
				if !l.get(u, i) {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, x := range lat {
		all = append(all, x...)
	}
	return result{requests: n.Load(), errors: errs.Load(), elapsed: time.Since(start), latencies: all}
}

// get requests u for user i (none when i < 0); true on a 200.
func (l *load) get(u string, i int) bool {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if i >= 0 {
		req.Header.Set("X-User", l.users[i])
		if l.seen != nil {
			l.seen[i].Store(true)
		}
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// touchAll requests every user once at u with conc workers, so the
// instance holds every credential; it returns the failures.
func (l *load) touchAll(u string) int64 {
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < l.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(l.users) {
					return
				}
				if !l.get(u, i) {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return errs.Load()
}

func rate(r result) float64 { return float64(r.requests) / r.elapsed.Seconds() }

// percentile of the latencies of rs together (q in [0,1]).
func percentile(rs []result, q float64) time.Duration {
	var all []time.Duration
	for _, r := range rs {
		all = append(all, r.latencies...)
	}
	if len(all) == 0 {
		return 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[min(len(all)-1, int(q*float64(len(all))))]
}

// pooledRate is the requests of rs over their time together.
func pooledRate(rs []result) float64 {
	var n int64
	var d time.Duration
	for _, r := range rs {
		n, d = n+r.requests, d+r.elapsed
	}
	if d <= 0 {
		return math.NaN()
	}
	return float64(n) / d.Seconds()
}

// quantile of xs (q in [0,1]), interpolating between neighbours.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
