// Package redisbackend stores credential records in Redis (standalone,
// Sentinel or Cluster) so several Caddy instances share credentials, with
// compare-and-swap writes, lease locks for refresh and a pub/sub channel
// that tells every instance when a credential changed.
package redisbackend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config selects and reaches a Redis deployment.
type Config struct {
	// URLs are redis:// or rediss:// URLs. Several URLs, or Cluster,
	// select Redis Cluster; with SentinelMaster they are the sentinels.
	URLs []string `json:"urls,omitempty"`
	// Username and Password override those in the URLs.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB selects the database (standalone and Sentinel only).
	DB int `json:"db,omitempty"`
	// TLS forces TLS (also implied by rediss:// URLs).
	TLS bool `json:"tls,omitempty"`
	// SentinelMaster is the master name monitored by the sentinels.
	SentinelMaster string `json:"sentinel_master,omitempty"`
	// SentinelPassword authenticates to the sentinels.
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// Cluster selects Redis Cluster even with one URL.
	Cluster bool `json:"cluster,omitempty"`
	// KeyPrefix namespaces every key and the change channel (default
	// "oauth_gateway").
	KeyPrefix string `json:"key_prefix,omitempty"`
	// DialTimeout, ReadTimeout and WriteTimeout bound every command
	// (defaults 2s, 1s, 1s).
	DialTimeout  time.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  time.Duration `json:"read_timeout,omitempty"`
	WriteTimeout time.Duration `json:"write_timeout,omitempty"`
}

// universalOptions turns the config into go-redis options.
func (c Config) universalOptions() (*redis.UniversalOptions, error) {
	if len(c.URLs) == 0 {
		return nil, errors.New("redisbackend: no Redis URL")
	}
	o := &redis.UniversalOptions{
		MasterName:       c.SentinelMaster,
		SentinelPassword: c.SentinelPassword,
		DB:               c.DB,
		DialTimeout:      orDefault(c.DialTimeout, defaultDialTimeout),
		ReadTimeout:      orDefault(c.ReadTimeout, defaultReadTimeout),
		WriteTimeout:     orDefault(c.WriteTimeout, time.Second),
		// Short connection retries: callers have their own backoff, and a
		// request must not hang on a Redis that is down.
		MaxRetries:      1,
		MinRetryBackoff: 8 * time.Millisecond,
		MaxRetryBackoff: 64 * time.Millisecond,
	}
	useTLS := c.TLS
	for i, raw := range c.URLs {
		u, err := redis.ParseURL(raw)
		if err != nil {
			// The URL may hold a password: do not echo it.
			return nil, fmt.Errorf("redisbackend: URL %d is not a valid redis:// or rediss:// URL", i+1)
		}
		o.Addrs = append(o.Addrs, u.Addr)
		if u.TLSConfig != nil {
			useTLS = true
		}
		if i == 0 {
			o.Username, o.Password = u.Username, u.Password
			if c.DB == 0 {
				o.DB = u.DB
			}
		}
	}
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
	}
	if useTLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

const (
	defaultDialTimeout = 2 * time.Second
	defaultReadTimeout = time.Second
)

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
