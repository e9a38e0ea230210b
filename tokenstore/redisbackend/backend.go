package redisbackend

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Backend implements tokenstore.Backend and tokenstore.Notifier on Redis.
type Backend struct {
	client redis.UniversalClient
	locker *redislock.Client
	prefix string

	stop    context.CancelFunc // ends the start-up check
	started chan struct{}      // closed when the start-up check is done
}

// New connects to Redis as cfg says. It does not wait for Redis to be up:
// a gateway starts while Redis is down and recovers when it returns.
// With WithLogger, go-redis logs through that logger and, if Redis does not
// answer a first ping, one warning naming its address is logged.
func New(cfg Config, opt ...Option) (*Backend, error) {
	var o options
	for _, f := range opt {
		f(&o)
	}
	opts, err := cfg.universalOptions()
	if err != nil {
		return nil, err
	}
	secrets := cfg.secrets(opts)
	if o.logger != nil {
		// Before the client exists, so none of its messages reach stderr.
		useLogger(o.logger, secrets...)
	}
	var client redis.UniversalClient
	switch {
	case cfg.SentinelMaster != "":
		client = redis.NewFailoverClient(opts.Failover())
	case cfg.Cluster || len(opts.Addrs) > 1:
		client = redis.NewClusterClient(opts.Cluster())
	default:
		client = redis.NewClient(opts.Simple())
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = "oauth_gateway"
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Backend{client: client, locker: redislock.New(client), prefix: prefix, stop: stop, started: make(chan struct{})}
	if o.logger != nil {
		go b.checkAtStart(ctx, o.logger, cfg, secrets)
	} else {
		close(b.started)
	}
	return b, nil
}

// Keys of one credential share a hash tag, so they live in one Cluster
// slot and a script may touch them together.
func (b *Backend) recordKey(id string) string { return "{" + b.prefix + ":" + id + "}:rec" }
func (b *Backend) lockKey(id string) string   { return "{" + b.prefix + ":" + id + "}:lock" }
func (b *Backend) indexKey() string           { return "{" + b.prefix + "}:ids" }
func (b *Backend) channel() string            { return b.prefix + ":changes" }

// Ping checks that Redis answers.
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisbackend: ping: %w", err)
	}
	return nil
}

// Get implements tokenstore.Backend. A key that holds something other
// than a record this backend wrote (another type, set with SET; a hash
// with one of the two fields; a generation that is no number) is
// unreadable (tokenstore.ErrUnreadable), not absent and not an outage: the
// credential fails closed, and the compare-and-swap never writes over it.
func (b *Backend) Get(ctx context.Context, id string) (uint64, []byte, error) {
	vals, err := b.client.HMGet(ctx, b.recordKey(id), "gen", "data").Result()
	if isWrongType(err) {
		return 0, nil, fmt.Errorf("%w: redisbackend: key of %s holds no record (%v)", tokenstore.ErrUnreadable, id, err)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("redisbackend: reading %s: %w", id, err)
	}
	if len(vals) != 2 || (vals[0] == nil && vals[1] == nil) {
		return 0, nil, tokenstore.ErrNotFound
	}
	if vals[0] == nil || vals[1] == nil {
		return 0, nil, fmt.Errorf("%w: redisbackend: record %s lacks its generation or its data", tokenstore.ErrUnreadable, id)
	}
	genStr, _ := vals[0].(string)
	gen, err := strconv.ParseUint(genStr, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: redisbackend: record %s has a bad generation", tokenstore.ErrUnreadable, id)
	}
	data, _ := vals[1].(string)
	return gen, []byte(data), nil
}

// isWrongType reports whether Redis refused a command for the key's type.
func isWrongType(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "WRONGTYPE")
}

// casScript writes a record only if its generation is the expected one
// (absent counts as 0): atomically, so two instances can never both
// believe they wrote generation N+1.
var casScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'gen')
if not cur then cur = '0' end
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'data', ARGV[3])
return 1
`)

// CompareAndSwap implements tokenstore.Backend.
func (b *Backend) CompareAndSwap(ctx context.Context, id string, prevGen, newGen uint64, data []byte) error {
	ok, err := casScript.Run(ctx, b.client, []string{b.recordKey(id)},
		strconv.FormatUint(prevGen, 10), strconv.FormatUint(newGen, 10), data).Int()
	if err != nil {
		return fmt.Errorf("redisbackend: writing %s: %w", id, err)
	}
	if ok != 1 {
		return tokenstore.ErrConflict
	}
	// The index lives in another slot, so it is a separate command; List
	// tolerates ids whose record is gone.
	if prevGen == 0 {
		if err := b.client.SAdd(ctx, b.indexKey(), id).Err(); err != nil {
			return fmt.Errorf("redisbackend: indexing %s: %w", id, err)
		}
	}
	return nil
}

// Delete implements tokenstore.Backend.
func (b *Backend) Delete(ctx context.Context, id string) error {
	if err := b.client.Del(ctx, b.recordKey(id)).Err(); err != nil {
		return fmt.Errorf("redisbackend: deleting %s: %w", id, err)
	}
	if err := b.client.SRem(ctx, b.indexKey(), id).Err(); err != nil {
		return fmt.Errorf("redisbackend: unindexing %s: %w", id, err)
	}
	return nil
}

// List implements tokenstore.Backend.
func (b *Backend) List(ctx context.Context) ([]string, error) {
	ids, err := b.client.SMembers(ctx, b.indexKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redisbackend: listing: %w", err)
	}
	return ids, nil
}

// Lock implements tokenstore.Backend with a lease (bsm/redislock: SET NX
// PX with a random owner token; release and refresh check the token), and
// retries until ctx ends.
func (b *Backend) Lock(ctx context.Context, id string, ttl time.Duration) (func(), error) {
	return b.obtain(ctx, id, ttl, false)
}

// TryLock implements tokenstore.TryLocker: one attempt.
func (b *Backend) TryLock(ctx context.Context, id string, ttl time.Duration) (func(), error) {
	return b.obtain(ctx, id, ttl, true)
}

// obtain takes the lease, retrying until ctx ends unless once.
func (b *Backend) obtain(ctx context.Context, id string, ttl time.Duration, once bool) (func(), error) {
	retry := redislock.LimitRetry(redislock.ExponentialBackoff(5*time.Millisecond, 200*time.Millisecond), 1<<30)
	if once {
		retry = redislock.NoRetry()
	}
	// Our own token, so that a lease Redis set although the reply was
	// lost (a timeout, a dropped connection) can still be released.
	// Without it such a lease stalls every instance for its whole TTL.
	token := rand.Text()
	lock, err := b.locker.Obtain(ctx, b.lockKey(id), ttl, &redislock.Options{RetryStrategy: retry, Token: token})
	if err != nil {
		if once && errors.Is(err, redislock.ErrNotObtained) && ctx.Err() == nil {
			// Redis answered that someone else holds it: nothing of
			// ours to release.
			return nil, tokenstore.ErrLockBusy
		}
		go b.releaseOrphan(b.lockKey(id), token, ttl)
		if errors.Is(err, redislock.ErrNotObtained) || ctx.Err() != nil {
			return nil, tokenstore.ErrLockTimeout
		}
		return nil, fmt.Errorf("redisbackend: locking %s: %w", id, err)
	}
	stop := make(chan struct{})
	go keepLease(lock, ttl, stop)
	var released sync.Once
	return func() {
		released.Do(func() {
			close(stop)
			// A fresh context: the caller's may be done, and a lease
			// left behind stalls every instance until it expires.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := lock.Release(ctx)
			if err != nil && !errors.Is(err, redislock.ErrLockNotHeld) {
				// Redis did not answer (restarting, failing over):
				// release it once it does.
				go b.releaseOrphan(b.lockKey(id), token, ttl)
			}
			// ErrLockNotHeld: it expired, someone else may own it now.
		})
	}, nil
}

// maxLease bounds how long a lease is extended: a holder stuck longer
// than this (its work is bounded far below) loses it.
const maxLease = 2 * time.Minute

// keepLease extends the lease every third of its TTL while its holder
// works, so the TTL only bounds how long a holder that died (a killed
// process, a lost connection, a failover that lost the release) blocks
// the others, and can be short.
func keepLease(lock *redislock.Lock, ttl time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	deadline := time.After(maxLease)
	for {
		select {
		case <-stop:
			return
		case <-deadline:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			err := lock.Refresh(ctx, ttl, nil)
			cancel()
			if errors.Is(err, redislock.ErrNotObtained) {
				return // expired meanwhile: someone else may hold it now
			}
		}
	}
}

// releaseOrphan deletes key if it still holds token: a lease this
// instance may have obtained without learning so. Best effort, bounded.
// It retries until the lease would have expired anyway (ttl from now):
// a lease left behind while Redis restarts (kept in its append-only
// file) otherwise blocks the credential's refreshes for its whole TTL.
func (b *Backend) releaseOrphan(key, token string, ttl time.Duration) {
	until := time.Now().Add(ttl)
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := releaseIfOwner.Run(ctx, b.client, []string{key}, token).Err()
		cancel()
		if err == nil || errors.Is(err, redis.ErrClosed) || time.Now().Add(wait).After(until) {
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// releaseIfOwner deletes a lock key whose value is (starts with) the
// owner's token, as redislock's own release does.
var releaseIfOwner = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)

// Publish implements tokenstore.Notifier.
func (b *Backend) Publish(ctx context.Context, id string, gen uint64) error {
	if err := b.client.Publish(ctx, b.channel(), id+":"+strconv.FormatUint(gen, 10)).Err(); err != nil {
		return fmt.Errorf("redisbackend: publishing: %w", err)
	}
	return nil
}

// Subscribe implements tokenstore.Notifier. go-redis re-subscribes after
// a connection is lost, so a Redis restart does not end it.
func (b *Backend) Subscribe(ctx context.Context, fn func(id string, gen uint64)) error {
	ps := b.client.Subscribe(ctx, b.channel())
	defer ps.Close()
	ch := ps.Channel(redis.WithChannelHealthCheckInterval(5 * time.Second))
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return errors.New("redisbackend: subscription closed")
			}
			id, genStr, found := strings.Cut(msg.Payload, ":")
			if !found {
				continue
			}
			gen, err := strconv.ParseUint(genStr, 10, 64)
			if err != nil {
				continue
			}
			fn(id, gen)
		}
	}
}

// Close implements tokenstore.Backend.
func (b *Backend) Close() error {
	b.stop()
	<-b.started
	return b.client.Close()
}

// Interface guards
var (
	_ tokenstore.Backend  = (*Backend)(nil)
	_ tokenstore.Notifier = (*Backend)(nil)
)
