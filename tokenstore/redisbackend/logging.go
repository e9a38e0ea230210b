package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/redact"
)

// Option configures New.
type Option func(*options)

type options struct {
	logger *zap.Logger
}

// WithLogger sends go-redis's own messages and the backend's start-up
// warning to l instead of stderr. go-redis has one logger per process, so
// its messages go to the logger of the most recently created backend.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) { o.logger = l }
}

// sink is what the process-wide go-redis logger forwards to.
type sink struct {
	log     *zap.Logger
	secrets []string
}

var (
	installOnce sync.Once
	current     atomic.Pointer[sink]

	secretsMu sync.Mutex
	secretSet = map[string]struct{}{}
)

// useLogger makes l the destination of go-redis's messages and adds
// secrets to those scrubbed from them. Secrets are kept for the life of
// the process: a backend closed by a reload may still have a goroutine
// that logs.
func useLogger(l *zap.Logger, secrets ...string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for _, s := range secrets {
		if s != "" {
			secretSet[s] = struct{}{}
		}
	}
	all := make([]string, 0, len(secretSet))
	for s := range secretSet {
		all = append(all, s)
	}
	current.Store(&sink{log: l.Named("redis"), secrets: all})
	installOnce.Do(func() { redis.SetLogger(zapAdapter{}) })
}

// zapAdapter implements go-redis's logging interface on top of current.
type zapAdapter struct{}

func (zapAdapter) Printf(_ context.Context, format string, v ...any) {
	s := current.Load()
	if s == nil {
		return
	}
	msg := redact.Scrub(strings.TrimSpace(fmt.Sprintf(format, v...)), s.secrets...)
	msg = strings.TrimPrefix(msg, "redis: ")
	if isFailure(msg) {
		s.log.Warn(msg)
	} else {
		s.log.Debug(msg)
	}
}

// isFailure tells messages about something going wrong (dial errors,
// connection pool trouble, failed commands) from routine ones.
func isFailure(msg string) bool {
	m := strings.ToLower(msg)
	for _, w := range []string{"fail", "error", "err=", "dial", "connection pool", "refused", "timeout", "panic", "unreachable"} {
		if strings.Contains(m, w) {
			return true
		}
	}
	return false
}

// secrets returns the passwords cfg and its resolved options hold.
func (c Config) secrets(o *redis.UniversalOptions) []string {
	return []string{c.Password, c.SentinelPassword, o.Password, o.SentinelPassword}
}

// redactedAddress names the configured Redis without credentials.
func (c Config) redactedAddress() string {
	urls := make([]string, len(c.URLs))
	for i, u := range c.URLs {
		urls[i] = redact.URL(u)
	}
	return strings.Join(urls, ",")
}

// checkAtStart pings Redis once and, if it does not answer, logs one
// warning. It never fails the backend: the gateway serves from memory and
// recovers when Redis returns.
func (b *Backend) checkAtStart(ctx context.Context, log *zap.Logger, cfg Config, secrets []string) {
	defer close(b.started)
	pingCtx, cancel := context.WithTimeout(ctx, orDefault(cfg.DialTimeout, defaultDialTimeout)+orDefault(cfg.ReadTimeout, defaultReadTimeout))
	defer cancel()
	err := b.client.Ping(pingCtx).Err()
	if err == nil || ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
		return // up, or closed before it answered
	}
	log.Warn("redis unreachable at start; credentials will be served from memory and refreshed once it is back",
		zap.String("address", cfg.redactedAddress()),
		zap.String("error", redact.Scrub(err.Error(), secrets...)))
}
