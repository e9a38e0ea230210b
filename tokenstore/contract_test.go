package tokenstore_test

import (
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore/storetest"
)

func TestMemoryBackendContract(t *testing.T) {
	storetest.BackendContract(t, tokenstore.NewMemoryBackend())
}

func TestStorageBackendContract(t *testing.T) {
	storetest.BackendContract(t, tokenstore.NewStorageBackend(&certmagic.FileStorage{Path: t.TempDir()}, ""))
}
