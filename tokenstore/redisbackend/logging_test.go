package redisbackend

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
	"github.com/oauthgw/caddy-oauth-gateway/redact"
)

const startWarning = "redis unreachable at start"

// entryText is an entry's message and fields, for searching.
func entryText(e observer.LoggedEntry) string {
	var b strings.Builder
	b.WriteString(e.Message)
	for k, v := range e.ContextMap() {
		fmt.Fprintf(&b, " %s=%v", k, v)
	}
	return b.String()
}

func waitStarted(t *testing.T, b *Backend) {
	t.Helper()
	select {
	case <-b.started:
	case <-time.After(10 * time.Second):
		t.Fatal("start-up check did not finish")
	}
}

// With Redis unreachable, go-redis's messages reach the zap logger (none
// reach stderr), one warning names the redacted address, and the password
// appears nowhere.
func TestLogRedisUnreachable(t *testing.T) {
	const password = "s3cretPassw0rd"
	url := "redis://:" + password + "@127.0.0.1:1/0" // port 1: closed
	core, logs := observer.New(zapcore.DebugLevel)

	stderr := captureStderr(t, func() {
		writeStderrProbe("probe") // proves fd 2 is captured
		b, err := New(Config{URLs: []string{url}, DialTimeout: 200 * time.Millisecond}, WithLogger(zap.New(core)))
		if err != nil {
			t.Error(err)
			return
		}
		waitStarted(t, b)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, _, err := b.Get(ctx, "x"); err == nil {
			t.Error("Get with Redis unreachable succeeded")
		}
		_ = b.Close()
	})

	if stderr != "probe" {
		t.Errorf("stderr = %q, want only the probe", stderr)
	}

	all := logs.All()
	var fromRedis, warnings []observer.LoggedEntry
	for _, e := range all {
		text := entryText(e)
		if strings.Contains(text, password) {
			t.Errorf("password logged: %s", text)
		}
		if strings.Contains(text, "failed to dial") {
			fromRedis = append(fromRedis, e)
		}
		if strings.HasPrefix(e.Message, startWarning) {
			warnings = append(warnings, e)
		}
	}
	if len(fromRedis) == 0 {
		t.Errorf("no go-redis message in the zap logger; got %d entries", len(all))
	}
	for _, e := range fromRedis {
		if e.Level != zapcore.WarnLevel || e.LoggerName != "redis" {
			t.Errorf("go-redis message at %s on %q: %s", e.Level, e.LoggerName, e.Message)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d start warnings, want 1: %v", len(warnings), all)
	}
	w := warnings[0]
	fields := w.ContextMap()
	if w.Level != zapcore.WarnLevel || fields["address"] != redact.URL(url) ||
		!strings.Contains(fmt.Sprint(fields["address"]), "127.0.0.1:1") || fields["error"] == "" {
		t.Errorf("start warning %s %q %v", w.Level, w.Message, fields)
	}
}

// A Redis that answers gets no start warning.
func TestLogQuietWhenRedisUp(t *testing.T) {
	s := redistest.Start(t)
	core, logs := observer.New(zapcore.DebugLevel)
	b, err := New(Config{URLs: []string{s.URL()}}, WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitStarted(t, b)
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Fatalf("%d warnings with Redis up: %v", n, logs.All())
	}
}

func TestLogLevelOfRedisMessages(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	useLogger(zap.New(core), "hunter22")
	a := zapAdapter{}
	a.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "dial tcp 127.0.0.1:1: connect: connection refused")
	a.Printf(context.Background(), "sentinel: new master=%q addr=%q", "gw", "10.0.0.1:6379")
	a.Printf(context.Background(), "auth with %s rejected", "hunter22")
	got := logs.All()
	if len(got) != 3 {
		t.Fatalf("%d entries", len(got))
	}
	if got[0].Level != zapcore.WarnLevel || got[0].Message != "connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:1: connect: connection refused" {
		t.Errorf("dial failure: %s %q", got[0].Level, got[0].Message)
	}
	if got[1].Level != zapcore.DebugLevel {
		t.Errorf("routine message at %s", got[1].Level)
	}
	if strings.Contains(got[2].Message, "hunter22") {
		t.Errorf("password not scrubbed: %q", got[2].Message)
	}
}
