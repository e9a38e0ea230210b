package caddymodule

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/gateway"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore/redisbackend"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the oauth_gateway app: settings shared by every oauth_gateway
// handler, chiefly where credentials are stored. It is configured with the
// `oauth_gateway` global option; without it, credentials persist in
// Caddy's configured storage (by default its data directory).
type App struct {
	// Storage selects where credentials persist. Default: Caddy's
	// configured storage (the file system under Caddy's data directory
	// unless a `storage` global option says otherwise).
	Storage *StorageConfig `json:"storage,omitempty"`

	// EncryptionKeys are base64-encoded 32-byte keys (AES-256-GCM) that
	// encrypt credential records at rest. The first key encrypts; all keys
	// decrypt, so keys rotate by adding a new first key. Placeholders such
	// as {env.OAUTH_GATEWAY_KEY} are expanded.
	EncryptionKeys []string `json:"encryption_keys,omitempty"`

	// CacheSize bounds how many credentials keep their token in memory
	// (default 10000). Others reload from storage when next used.
	CacheSize int `json:"cache_size,omitempty"`

	// RefreshSkew is how long before expiry a token is refreshed in the
	// background (default 60s; capped at a fifth of the token's lifetime).
	RefreshSkew caddy.Duration `json:"refresh_skew,omitempty"`

	// InsecurePlaintext lets the Redis store run without EncryptionKeys.
	// Without it, storage redis refuses to start unencrypted: records there
	// are readable by anyone with access to Redis.
	InsecurePlaintext bool `json:"insecure_plaintext,omitempty"`

	manager *tokenstore.Manager
	poolKey string
	logger  *zap.Logger
}

// StorageConfig selects a credential backend.
type StorageConfig struct {
	// Type is "caddy" (default: Caddy's configured storage), "memory"
	// (nothing persists across restarts) or "file" (a directory).
	Type string `json:"type,omitempty"`
	// Dir is the directory for Type "file" (default: an oauth_gateway
	// folder in Caddy's data directory).
	Dir string `json:"dir,omitempty"`
	// Redis configures Type "redis": standalone, Sentinel or Cluster.
	// Placeholders in its username and passwords are expanded.
	Redis *redisbackend.Config `json:"redis,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth_gateway",
		New: func() caddy.Module { return new(App) },
	}
}

// managers keeps token managers alive across config reloads: a reload
// must not drop cached tokens or a pending (unpersisted) refresh token.
// The new config provisions before the old one is cleaned up, so the
// usage count never drops to zero in between.
var managers = caddy.NewUsagePool()

type managerHandle struct{ m *tokenstore.Manager }

// Destruct implements caddy.Destructor.
func (h managerHandle) Destruct() error { return h.m.Close() }

// Provision sets up the storage backend and the token manager.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := gateway.RegisterMetrics(reg); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}
	if a.Storage == nil {
		a.Storage = &StorageConfig{}
	}
	keys, err := decodeKeys(a.EncryptionKeys)
	if err != nil {
		return err
	}
	if a.Storage.Type == "redis" && len(keys) == 0 && !a.InsecurePlaintext {
		return fmt.Errorf("storage redis: set encryption_key (records would be readable by anyone with access to Redis) or insecure_plaintext")
	}
	backendKey, build, err := a.backend(ctx)
	if err != nil {
		return err
	}
	keyJSON, _ := json.Marshal([]any{backendKey, a.EncryptionKeys, a.CacheSize, a.RefreshSkew})
	a.poolKey = string(keyJSON)

	val, _, err := managers.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		backend, err := build()
		if err != nil {
			return nil, err
		}
		var codec tokenstore.Codec = tokenstore.PlainCodec{}
		if len(keys) > 0 {
			if codec, err = tokenstore.NewAEADCodec(keys...); err != nil {
				return nil, err
			}
		}
		m, err := tokenstore.NewManager(backend, codec, a.logger.Named("tokenstore"), tokenstore.Options{
			CacheSize:   a.CacheSize,
			RefreshSkew: time.Duration(a.RefreshSkew),
			DecodeKey:   gateway.DecodeDPoPKey,
		})
		if err != nil {
			return nil, err
		}
		m.SetHooks(gateway.MetricsHooks())
		return managerHandle{m}, nil
	})
	if err != nil {
		return fmt.Errorf("setting up credential storage: %v", err)
	}
	a.manager = val.(managerHandle).m
	return nil
}

// Start implements caddy.App.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's use of the token manager.
func (a *App) Cleanup() error {
	if a.poolKey == "" {
		return nil
	}
	_, err := managers.Delete(a.poolKey)
	return err
}

// Manager returns the token manager (for handlers and the admin API).
func (a *App) Manager() *tokenstore.Manager { return a.manager }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
