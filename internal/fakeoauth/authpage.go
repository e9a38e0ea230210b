package fakeoauth

import (
	"html/template"
	"net/http"
	"sort"
)

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to {{.Issuer}}</title></head>
<body>
<h1>Sign in to {{.Issuer}}</h1>
<p>The application <strong id="client-id">{{.ClientID}}</strong>{{if .ClientName}} (<span id="client-name">{{.ClientName}}</span>){{end}} asks for access.</p>
<p>Scope: <code id="scope">{{.Scope}}</code></p>
{{if .Resource}}<p>Resource: <code id="resource">{{.Resource}}</code></p>
{{end}}<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}{{range .Users}}<button type="submit" name="user" value="{{.}}" id="user-{{.}}">Continue as {{.}}</button>
{{end}}<button type="submit" name="deny" value="1" id="deny">Deny</button>
</form>
</body>
</html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Authorization error</title></head>
<body>
<h1>Authorization error at {{.Issuer}}</h1>
<p id="error">{{.Message}}</p>
</body>
</html>
`))

type hiddenField struct{ Name, Value string }

// loginPage renders the login and consent page; the request parameters
// travel to the decision in hidden fields.
func (a *AuthServer) loginPage(w http.ResponseWriter, req *authzRequest) {
	keys := make([]string, 0, len(req.params))
	for k := range req.params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var hidden []hiddenField
	for _, k := range keys {
		for _, v := range req.params[k] {
			hidden = append(hidden, hiddenField{k, v})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	_ = loginTemplate.Execute(w, map[string]any{
		"Issuer": a.Issuer(), "ClientID": req.clientID, "ClientName": req.clientName,
		"Scope": req.scope, "Resource": req.resource, "Action": a.decideURL(),
		"Hidden": hidden, "Users": a.opts.Users,
	})
}

// errorPage answers an HTML error page: what the user sees when the
// server cannot safely redirect back to the client.
func errorPage(w http.ResponseWriter, status int, issuer, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = errorTemplate.Execute(w, map[string]string{"Issuer": issuer, "Message": msg})
}
