package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Caddy writes a request to its logs as the client sent it: the server
// clones the request before any handler runs (caddyhttp/server.go,
// ServeHTTP: "clone the request for logging purposes before it enters any
// handler chain") for the access log (the `log` directive) and for the
// error log (a handler's error, such as reverse_proxy's 502: ERROR for a
// 5xx, DEBUG for a 4xx, with or without `log`). Removing the header here
// (the gateway does, before proxying) cannot take it out of those lines.
// Their header values are redacted only for these names, unless the
// server's log_credentials is on (caddy/v2 internal/logmarshalers.go).
var caddyRedactedHeaders = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Cookie":              true,
	"Set-Cookie":          true,
}

// subjectTokenLogRisk says where Caddy's own logs would show the subject
// token a request carries in the placeholder, and how to keep it out:
// what is empty when they would not. logCredentials is Caddy's
// log_credentials server option, which logs even the headers it
// otherwise redacts.
func subjectTokenLogRisk(placeholder string, logCredentials bool) (what, fix string) {
	key := placeholderKey(placeholder)
	if header := requestHeaderOf(key); header != "" {
		if caddyRedactedHeaders[header] && !logCredentials {
			return "", ""
		}
		what = "request header " + header
		if caddyRedactedHeaders[header] {
			what += " (log_credentials is on)"
		}
		fix = "carry the token in Authorization (with forward_auth: copy_headers " + header + ">Authorization)"
		if caddyRedactedHeaders[header] {
			fix = "turn log_credentials off"
		}
		return what, fix + ", or filter the header out of the site's access log and out of the default log, where Caddy's error lines go: log { format filter { request>headers>" + header + " delete } }"
	}
	if param, ok := strings.CutPrefix(key, "http.request.uri.query."); ok && param != "" {
		return "query parameter " + param + " (logged in the request's uri)",
			"carry the token in Authorization, or filter it out of the site's access log and the default log: log { format filter { request>uri query { delete " + param + " } } }"
	}
	return "", ""
}

// warnSubjectTokenLogged warns when Caddy's access and error logs would
// show the subject token as the client sent it. Caddy's log_credentials
// is per server, and a handler cannot tell which server it is in: if any
// server of the http app logs credentials, Authorization counts as logged.
func (h *Handler) warnSubjectTokenLogged(ctx caddy.Context, resource string) {
	if h.SubjectToken == "" {
		return
	}
	what, fix := subjectTokenLogRisk(h.SubjectToken, httpLogsCredentials(ctx))
	if what == "" {
		return
	}
	h.logger.Warn("subject_token: Caddy's access log and error log record this part of the request as the client sent it, redacting only the Authorization, Proxy-Authorization, Cookie and Set-Cookie headers; a subject token sent there is written to them",
		zap.String("subject_token", h.SubjectToken), zap.String("logged", what), zap.String("fix", fix),
		zap.String("resource", resource))
}

// httpLogsCredentials reports whether a server of the http app being
// provisioned has log_credentials on. The app is registered before it
// provisions its routes (caddy.Context.LoadModuleByID keeps a reference
// for submodules), so this reads its configuration, not a new app.
func httpLogsCredentials(ctx caddy.Context) bool {
	appVal, err := ctx.AppIfConfigured("http")
	if err != nil {
		return false
	}
	app, ok := appVal.(*caddyhttp.App)
	if !ok {
		return false
	}
	for _, srv := range app.Servers {
		if srv != nil && srv.Logs != nil && srv.Logs.ShouldLogCredentials {
			return true
		}
	}
	return false
}
