package caddymodule

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A subject token read from a request header Caddy does not redact is
// warned about at provisioning, naming the header and the log filter that
// keeps it out; Authorization (and the other headers Caddy redacts) is
// not, unless log_credentials is on.
func TestSubjectTokenLogWarning(t *testing.T) {
	for _, tc := range []struct {
		placeholder    string
		logCredentials bool
		logged         string // "" for no warning
		fix            string
	}{
		{"{http.request.header.X-Id-Token}", false, "request header X-Id-Token", "log { format filter { request>headers>X-Id-Token delete } }"},
		// Caddy logs the canonical name; the filter's field path must use it.
		{"{http.request.header.x-subject-token}", false, "request header X-Subject-Token", "request>headers>X-Subject-Token delete"},
		{"{http.request.header.X-Id-Token}", true, "request header X-Id-Token", "request>headers>X-Id-Token delete"},
		{"{http.request.header.Authorization}", false, "", ""},
		{"{http.request.header.authorization}", false, "", ""},
		{"{http.request.header.Proxy-Authorization}", false, "", ""},
		{"{http.request.header.Cookie}", false, "", ""},
		{"{http.request.header.Authorization}", true, "request header Authorization (log_credentials is on)", "turn log_credentials off"},
		{"{http.request.cookie.id_token}", false, "", ""},
		{"{http.request.uri.query.token}", false, "query parameter token", "request>uri query { delete token }"},
		{"{http.auth.user.id}", false, "", ""},
	} {
		logged, fix := subjectTokenLogRisk(tc.placeholder, tc.logCredentials)
		if tc.logged == "" {
			if logged != "" {
				t.Errorf("%s (log_credentials %v): warned %q, want no warning", tc.placeholder, tc.logCredentials, logged)
			}
			continue
		}
		if !strings.HasPrefix(logged, tc.logged) || !strings.Contains(fix, tc.fix) {
			t.Errorf("%s (log_credentials %v): logged %q, fix %q; want %q and a fix containing %q",
				tc.placeholder, tc.logCredentials, logged, fix, tc.logged, tc.fix)
		}
	}
}

// The warning is a WARN on the handler's logger at provisioning, for
// {http.request.header.X-Id-Token} and not for Authorization.
func TestSubjectTokenWarningAtProvisioning(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for placeholder, want := range map[string]bool{
		"{http.request.header.X-Id-Token}":    true,
		"{http.request.header.Authorization}": false,
		"":                                    false,
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		h := &Handler{SubjectToken: placeholder, logger: zap.New(core)}
		h.warnSubjectTokenLogged(ctx, "https://api.example/v1")
		warns := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("subject_token").All()
		if !want {
			if len(warns) != 0 {
				t.Errorf("%q: unexpected warning %q %v", placeholder, warns[0].Message, warns[0].ContextMap())
			}
			continue
		}
		if len(warns) != 1 {
			t.Fatalf("%q: %d warnings, want 1", placeholder, len(warns))
		}
		f := warns[0].ContextMap()
		if f["logged"] != "request header X-Id-Token" || !strings.Contains(f["fix"].(string), "request>headers>X-Id-Token delete") ||
			f["subject_token"] != placeholder || f["resource"] != "https://api.example/v1" {
			t.Errorf("%q: warning fields %v", placeholder, f)
		}
	}
}
