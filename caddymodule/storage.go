package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore/redisbackend"
)

// backend returns a key identifying the configured backend (managers are
// shared per key across reloads) and a constructor for it.
func (a *App) backend(ctx caddy.Context) (string, func() (tokenstore.Backend, error), error) {
	switch a.Storage.Type {
	case "", "caddy":
		st := ctx.Storage()
		key := fmt.Sprintf("caddy:%T:%p", st, st)
		if fs, ok := st.(*certmagic.FileStorage); ok {
			// A new config builds a new FileStorage value for the same
			// directory: key by path so the manager survives reloads.
			key = "caddy:file:" + fs.Path
		}
		return key, func() (tokenstore.Backend, error) {
			return tokenstore.NewStorageBackend(st, "oauth_gateway"), nil
		}, nil
	case "memory":
		return "memory", func() (tokenstore.Backend, error) {
			return tokenstore.NewMemoryBackend(), nil
		}, nil
	case "file":
		dir := a.Storage.Dir
		if dir == "" {
			dir = filepath.Join(caddy.AppDataDir(), "oauth_gateway")
		}
		dir, err := filepath.Abs(dir)
		if err != nil {
			return "", nil, fmt.Errorf("storage file: %v", err)
		}
		return "file:" + dir, func() (tokenstore.Backend, error) {
			return tokenstore.NewStorageBackend(&certmagic.FileStorage{Path: dir}, ""), nil
		}, nil
	case "redis":
		if a.Storage.Redis == nil || len(a.Storage.Redis.URLs) == 0 {
			return "", nil, fmt.Errorf("storage redis: at least one redis:// or rediss:// URL is required")
		}
		cfg := *a.Storage.Redis
		repl := caddy.NewReplacer()
		cfg.Username = repl.ReplaceKnown(cfg.Username, "")
		cfg.Password = repl.ReplaceKnown(cfg.Password, "")
		cfg.SentinelPassword = repl.ReplaceKnown(cfg.SentinelPassword, "")
		for i, u := range cfg.URLs {
			cfg.URLs[i] = repl.ReplaceKnown(u, "")
		}
		key, _ := json.Marshal(cfg)
		logger := a.logger
		if logger == nil {
			logger = caddy.Log()
		}
		return "redis:" + string(key), func() (tokenstore.Backend, error) {
			// go-redis logs through Caddy's logger, not to stderr.
			return redisbackend.New(cfg, redisbackend.WithLogger(logger))
		}, nil
	default:
		return "", nil, fmt.Errorf("storage: unknown type %q (want caddy, memory, file or redis)", a.Storage.Type)
	}
}

// decodeKeys expands placeholders and decodes base64 32-byte keys.
func decodeKeys(raw []string) ([][]byte, error) {
	repl := caddy.NewReplacer()
	var keys [][]byte
	for i, written := range raw {
		k := strings.TrimSpace(repl.ReplaceKnown(written, ""))
		if k == "" {
			return nil, fmt.Errorf("encryption_key %d: %s expanded to nothing (is the environment variable or file set?)", i+1, written)
		}
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			if b, err = base64.RawURLEncoding.DecodeString(k); err != nil {
				return nil, fmt.Errorf("encryption_key %d: not base64", i+1)
			}
		}
		if len(b) != 32 {
			return nil, fmt.Errorf("encryption_key %d: %d bytes, want 32", i+1, len(b))
		}
		keys = append(keys, b)
	}
	return keys, nil
}
