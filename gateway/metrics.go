package gateway

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// gatewayMetrics are process-wide collectors. A server that gives every
// configuration its own registry (Caddy does) registers them again on
// each load with RegisterMetrics; the counts carry over reloads.
var gatewayMetrics = struct {
	tokenRequests         *prometheus.CounterVec
	tokenLatency          *prometheus.HistogramVec
	refreshes             *prometheus.CounterVec
	replays               *prometheus.CounterVec
	stepUps               *prometheus.CounterVec
	discoveryFetches      *prometheus.CounterVec
	cache                 *prometheus.CounterVec
	lockWaits             prometheus.Histogram
	deadCredentials       prometheus.Counter
	storeErrors           prometheus.Counter
	adopted               prometheus.Counter
	rejectedAgain         prometheus.Counter
	replayBudget          prometheus.Counter
	authorizationRequired prometheus.Counter
	migrations            prometheus.Counter
	exchangesThrottled    *prometheus.CounterVec
}{
	tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "token_requests_total",
		Help: "Token endpoint requests by grant and outcome (success, an RFC 6749 error code, or transport_error).",
	}, []string{"grant", "outcome"}),
	tokenLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "token_request_duration_seconds",
		Help:    "Token endpoint latency.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"grant"}),
	refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "refreshes_total",
		Help: "New tokens obtained, by kind: initial (the credential's first), proactive (ahead of expiry, in the background), expiry (a request found the token expired), reactive (after an upstream rejected a token), step_up, operator (admin API).",
	}, []string{"kind"}),
	replays: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "replays_total",
		Help: "Requests replayed upstream, by cause (unauthorized, insufficient_scope).",
	}, []string{"cause"}),
	stepUps: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "step_ups_total",
		Help: "403 insufficient_scope handling by outcome (granted, not_grantable, refused).",
	}, []string{"outcome"}),
	discoveryFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "discovery_fetches_total",
		Help: "Metadata discovery lookups by outcome (found, not_found, untrusted, blocked, error).",
	}, []string{"outcome"}),
	cache: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "token_cache_total",
		Help: "Token lookups by result: hit (cached token used) or miss (the request waited for a token).",
	}, []string{"result"}),
	lockWaits: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "lock_wait_seconds",
		Help:    "Time spent waiting for a credential's refresh lock.",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 20},
	}),
	deadCredentials: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "dead_credentials_total",
		Help: "Credentials the authorization server rejected for good.",
	}),
	storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "store_write_errors_total",
		Help: "Failed credential writes (kept in memory and retried).",
	}),
	rejectedAgain: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "reactive_refreshes_throttled_total",
		Help: "Upstream 401s passed on without a refresh because the rejected token had itself just been obtained after a 401.",
	}),
	replayBudget: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "replay_budget_exceeded_total",
		Help: "Request bodies streamed without replay because the memory held for replay across requests was at its bound.",
	}),
	authorizationRequired: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "authorization_required_total",
		Help: "Requests answered with \"authorization required\" (a redirect into the flow, a URL elicitation or a 401) because the credential holds no token yet.",
	}),
	migrations: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "authorization_server_migrations_total",
		Help: "Credentials that let go of their authorization server because the resource named a new one (SEP-2352): their user consents again there.",
	}),
	exchangesThrottled: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "exchanges_throttled_total",
		Help: "Token exchanges (grants token_exchange, id_jag) refused with 429 before reaching the authorization server, by the rate limit that was reached: client (exchange_rate_per_client) or credential (exchange_rate).",
	}, []string{"scope"}),
	adopted: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "oauth_gateway", Name: "tokens_adopted_total",
		Help: "Tokens taken from the store (written by another instance or before a restart) instead of requested.",
	}),
}

// Pre-resolved hot-path counters: no label lookup per request.
var (
	cacheHits   = gatewayMetrics.cache.WithLabelValues("hit")
	cacheMisses = gatewayMetrics.cache.WithLabelValues("miss")

	throttledClient     = gatewayMetrics.exchangesThrottled.WithLabelValues(scopeClient)
	throttledCredential = gatewayMetrics.exchangesThrottled.WithLabelValues(scopeCredential)
)

var registerOnce sync.Mutex

// RegisterMetrics adds the collectors to reg (nil: nothing to do); a
// collector already registered there is not an error.
func RegisterMetrics(reg prometheus.Registerer) error {
	registerOnce.Lock()
	defer registerOnce.Unlock()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		gatewayMetrics.tokenRequests, gatewayMetrics.tokenLatency, gatewayMetrics.refreshes,
		gatewayMetrics.replays, gatewayMetrics.stepUps, gatewayMetrics.discoveryFetches,
		gatewayMetrics.cache, gatewayMetrics.lockWaits, gatewayMetrics.deadCredentials,
		gatewayMetrics.storeErrors, gatewayMetrics.adopted, gatewayMetrics.rejectedAgain, gatewayMetrics.replayBudget, gatewayMetrics.authorizationRequired, gatewayMetrics.migrations,
		gatewayMetrics.exchangesThrottled,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// MetricsHooks feeds a token manager's events into the collectors.
func MetricsHooks() tokenstore.Hooks {
	return tokenstore.Hooks{
		OnTokenRequest: func(_ string, grant string, err error, took time.Duration) {
			gatewayMetrics.tokenLatency.WithLabelValues(grant).Observe(took.Seconds())
			gatewayMetrics.tokenRequests.WithLabelValues(grant, outcomeOf(err)).Inc()
		},
		OnRefresh: func(_ string, reason string) {
			// The reason is the tokenstore's bounded set, the same word
			// the log line carries.
			gatewayMetrics.refreshes.WithLabelValues(reason).Inc()
		},
		OnAdopt:      func(string) { gatewayMetrics.adopted.Inc() },
		OnDead:       func(string) { gatewayMetrics.deadCredentials.Inc() },
		OnStoreError: func(string) { gatewayMetrics.storeErrors.Inc() },
		OnLockWait:   func(_ string, d time.Duration) { gatewayMetrics.lockWaits.Observe(d.Seconds()) },
	}
}

// outcomeOf is a bounded label value for a token request's result.
func outcomeOf(err error) string {
	if err == nil {
		return "success"
	}
	var oe *oauthclient.Error
	if errors.As(err, &oe) && oe.Err != nil {
		switch oe.Err.Code {
		case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
			"unsupported_grant_type", "invalid_scope", "invalid_target", "server_error", "temporarily_unavailable":
			return oe.Err.Code
		}
		return "other_error"
	}
	return "transport_error"
}
