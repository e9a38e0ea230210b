package gateway

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Grants token_exchange and id_jag send whatever subject token a request
// brings to the authorization server (for id_jag to the identity
// provider first). A refused token is remembered (tokenstore), but every
// new junk token would be one more request there: exchanges that reach
// the server are rate-limited per client and for the gateway as a whole.
// A token served from the cache, a refusal answered from memory and a
// request joining an exchange under way cost nothing
// (tokenstore.ExchangeOptions.Admit).
//
// The defaults are far above what a deployment needs: a client exchanges
// once per new subject token (a user's token lives minutes to hours), so
// a client, even a NAT of a few users, starts a few exchanges when it
// connects and then one now and then; 2 a second with a burst of 4 is
// 7,200 new subject tokens an hour for one address. The whole gateway's
// 20 a second (burst 40) is 72,000 an hour, above the exchange cache's
// default 10,000 subjects, and well below what an authorization server
// is built to take.
const (
	defaultExchangeRate       = 20
	defaultExchangeClientRate = 2
	// maxExchangeRate bounds both settings' rate and burst (a typo, not
	// a policy).
	maxExchangeRate = 1_000_000
	// maxExchangeClients bounds the per-client buckets held (about 200
	// bytes each). The least recently used is forgotten first; a client
	// forgotten comes back with a full bucket, which takes this many
	// other clients in between, and the gateway's own bucket bounds all
	// of them together.
	maxExchangeClients = 10_000
	// throttleLogEvery: at most one WARN line this often per gateway, with
	// the counts since the last one, so throttled requests cannot flood
	// the log.
	throttleLogEvery = time.Minute
)

// Throttle scopes: the metric's label values.
const (
	scopeClient     = "client"
	scopeCredential = "credential"
)

// exchangeRateDefaults fills in a rate and burst left out: the rate
// def, the burst twice the rate (at least 1).
func exchangeRateDefaults(perSecond float64, burst int, def float64) (float64, int) {
	if perSecond == 0 {
		perSecond = def
	}
	if burst == 0 && perSecond > 0 && perSecond <= maxExchangeRate {
		burst = max(1, int(math.Ceil(2*perSecond)))
	}
	return perSecond, burst
}

// checkExchangeRate validates one rate setting, after defaults.
func checkExchangeRate(name string, perSecond float64, burst int) error {
	if !(perSecond > 0) || perSecond > maxExchangeRate {
		return fmt.Errorf("%s: the rate must be a positive number of exchanges per second, at most %d", name, maxExchangeRate)
	}
	if burst < 1 || burst > maxExchangeRate {
		return fmt.Errorf("%s: the burst must be a positive number of exchanges, at most %d", name, maxExchangeRate)
	}
	return nil
}

// exchangeLimiter holds a gateway's token buckets: one for the gateway's
// exchange cache as a whole, one per client.
type exchangeLimiter struct {
	logger       *zap.Logger
	credentialID string
	now          func() time.Time

	// mu guards everything below: finding a client's bucket and taking
	// one exchange from it and from the gateway's is one step, so a
	// client refused for the gateway's bucket keeps its own token.
	mu          sync.Mutex
	credential  *rate.Limiter
	clientRate  rate.Limit
	clientBurst int
	// clients is a plain LRU, not golang-lru's expirable one: that one's
	// cleanup goroutine never stops (v2.0.7), and a Gateway is built on
	// every configuration load. A bucket needs no expiry: an idle one is
	// full, which is what a forgotten one becomes.
	clients  *simplelru.LRU[string, *rate.Limiter]
	lastLog  time.Time
	unlogged map[string]int // throttled since the last log line, by scope
}

func newExchangeLimiter(c *Config, logger *zap.Logger, credentialID string) *exchangeLimiter {
	clients, _ := simplelru.NewLRU[string, *rate.Limiter](maxExchangeClients, nil) // size > 0: no error
	return &exchangeLimiter{
		logger:       logger,
		credentialID: credentialID,
		now:          time.Now,
		credential:   rate.NewLimiter(rate.Limit(c.ExchangeRate), c.ExchangeBurst),
		clientRate:   rate.Limit(c.ExchangeClientRate),
		clientBurst:  c.ExchangeClientBurst,
		clients:      clients,
		unlogged:     map[string]int{},
	}
}

// admit takes one exchange from s's client's bucket and the gateway's,
// or neither: *exchangeThrottled says which is empty and for how long.
// It implements tokenstore.ExchangeOptions.Admit.
func (l *exchangeLimiter) admit(s tokenstore.Subject) error {
	now := l.now()
	l.mu.Lock()
	client, ok := l.clients.Get(s.Client)
	if !ok {
		client = rate.NewLimiter(l.clientRate, l.clientBurst)
		l.clients.Add(s.Client, client)
	}
	var empty *rate.Limiter
	scope := ""
	switch {
	case client.TokensAt(now) < 1:
		empty, scope = client, scopeClient
	case l.credential.TokensAt(now) < 1:
		empty, scope = l.credential, scopeCredential
	default:
		client.AllowN(now, 1)
		l.credential.AllowN(now, 1)
		l.mu.Unlock()
		return nil
	}
	th := &exchangeThrottled{scope: scope, perSecond: float64(empty.Limit()), burst: empty.Burst(),
		retryAfter: untilOne(empty, now)}
	l.unlogged[scope]++
	logNow := now.Sub(l.lastLog) >= throttleLogEvery
	var counts map[string]int
	if logNow {
		l.lastLog, counts, l.unlogged = now, l.unlogged, map[string]int{}
	}
	l.mu.Unlock()

	if scope == scopeClient {
		throttledClient.Inc()
	} else {
		throttledCredential.Inc()
	}
	if logNow {
		// Never the subject token; a principal is not named either (it
		// may come from anywhere a placeholder reads), an address is.
		who := "a principal"
		if addr, ok := strings.CutPrefix(s.Client, "addr:"); ok {
			who = addr
		}
		l.logger.Warn("token exchanges throttled: requests bring new subject tokens faster than the limit allows; answering 429 (one line per minute at most)",
			zap.String("credential", l.credentialID), zap.String("scope", scope), zap.String("client", who),
			zap.Float64("per_second", th.perSecond), zap.Int("burst", th.burst),
			zap.Int("throttled_client", counts[scopeClient]), zap.Int("throttled_credential", counts[scopeCredential]))
	}
	return th
}

// untilOne is how long until lim holds one exchange again.
func untilOne(lim *rate.Limiter, now time.Time) time.Duration {
	need := 1 - lim.TokensAt(now)
	if need <= 0 || lim.Limit() <= 0 {
		return 0
	}
	return time.Duration(need / float64(lim.Limit()) * float64(time.Second))
}

// exchangeClient is who a request of an exchange grant counts against:
// its principal when one is configured and named, else its direct peer's
// address (r.RemoteAddr: behind a proxy, the proxy's, so all clients
// share one bucket there). An IPv6 address counts by its /64, which one
// host usually holds whole.
func exchangeClient(principal, remoteAddr string) string {
	if principal != "" {
		return "principal:" + principal
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		if a.Is6() {
			p, _ := a.Prefix(64)
			return "addr:" + p.String()
		}
		return "addr:" + a.String()
	}
	return "addr:" + host
}

// exchangeThrottled refuses an exchange over a rate limit.
type exchangeThrottled struct {
	scope      string // scopeClient or scopeCredential
	perSecond  float64
	burst      int
	retryAfter time.Duration
}

func (e *exchangeThrottled) Error() string {
	return fmt.Sprintf("token exchange refused: the %s's rate limit (%g a second, burst %d) is reached", e.scope, e.perSecond, e.burst)
}

// respondThrottled answers a request whose exchange was refused by a
// rate limit: 429 with Retry-After and an RFC 6749-shaped JSON error,
// like every other answer of respondTokenError (also to MCP JSON-RPC
// requests: it is the HTTP exchange that is refused, not a method). It
// logs nothing per request: admit logs at most once a minute.
func (g *Gateway) respondThrottled(w http.ResponseWriter, cred tokenSource, th *exchangeThrottled) error {
	retry := max(1, int(math.Ceil(th.retryAfter.Seconds())))
	desc := fmt.Sprintf("too many new subject tokens from this client for credential %s: the gateway exchanges at most %g a second per client (burst %d); retry after %d s",
		cred.ID(), th.perSecond, th.burst, retry)
	if th.scope == scopeCredential {
		desc = fmt.Sprintf("too many token exchanges for credential %s from all clients together: the gateway sends at most %g a second to the authorization server (burst %d); retry after %d s",
			cred.ID(), th.perSecond, th.burst, retry)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Retry-After", strconv.Itoa(retry))
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusTooManyRequests)
	return json.NewEncoder(w).Encode(oauthErrorBody{Error: "temporarily_unavailable", ErrorDescription: desc})
}
