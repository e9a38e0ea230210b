package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`oauth_gateway {
		resource        https://api.example/v1
		token_endpoint  https://as.example/token
		client_id       c1
		client_secret   {env.SECRET}
		client_auth     post
		grant           refresh_token
		refresh_token   {env.SEED}
		scope           read write
		scope           admin
		max_replay_body 2MiB
		timeout         5s
		upstream_errors slack
		error_alias     weird_code invalid_grant
		discovery_allow_hosts mcp.internal
		insecure_allow_http
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"resource":"https://api.example/v1","token_endpoint":"https://as.example/token","discovery_allow_hosts":["mcp.internal"],"client_id":"c1","client_secret":"{env.SECRET}","client_auth":"post","grant":"refresh_token","refresh_token":"{env.SEED}","scopes":["read","write","admin"],"max_replay_body":2097152,"insecure_allow_http":true,"timeout":5000000000,"upstream_errors":["slack"],"error_aliases":{"weird_code":"invalid_grant"},"source":"Testfile:1"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for input, wantErr := range map[string]string{
		"oauth_gateway {\n\tbogus x\n}":                                  "unrecognized subdirective bogus",
		"oauth_gateway {\n\tgrant password\n}":                           `grant: unknown grant "password"`,
		"oauth_gateway {\n\tclient_auth jwt\n}":                          `client_auth: unknown method "jwt"`,
		"oauth_gateway {\n\tclient_auth client_secret_jwk\n}":            `client_auth: unknown method "client_secret_jwk"`,
		"oauth_gateway {\n\tmax_replay_body lots\n}":                     `max_replay_body: "lots" is not a positive size; write a number of bytes`,
		"oauth_gateway {\n\tmax_replay_body -5MiB\n}":                    `max_replay_body: "-5MiB" is not a positive size`,
		"oauth_gateway {\n\ttimeout 0s\n}":                               `timeout: "0s": must be positive`,
		"oauth_gateway {\n\ttoken_wait -1s\n}":                           `token_wait: "-1s": must be positive`,
		"oauth_gateway {\n\tscopes read\n}":                              `unrecognized subdirective scopes (did you mean "scope"?)`,
		"oauth_gateway {\n\tresource https://a\n\tresource https://b\n}": "resource: given twice (first on line 2)",
		"oauth_gateway {\n\tresource_parameter maybe\n}":                 "resource_parameter: want on or off",
		"oauth_gateway {\n\tdiscovery_allow_hosts a:0\n}":                "discovery_allow_hosts:",
		"oauth_gateway {\n\tresource\n}":                                 "wrong argument count",
		"oauth_gateway {\n\tresource a b\n}":                             "wrong argument count",
		"oauth_gateway {\n\terror_alias only_one\n}":                     "wrong argument count",
		"oauth_gateway {\n\ttimeout soon\n}":                             "timeout:",
		"oauth_gateway {\n\tinsecure_allow_http yes\n}":                  "wrong argument count",
		"oauth_gateway extra {\n\tresource https://x\n}":                 "wrong argument count",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", input, err, wantErr)
		}
	}
}

func TestValidateNamesTheSubdirective(t *testing.T) {
	base := func() Handler {
		return Handler{Resource: "https://api.example/v1", TokenEndpoint: "https://as.example/token", ClientID: "c", Grant: "client_credentials"}
	}
	cases := []struct {
		mutate func(*Handler)
		want   string
	}{
		{func(h *Handler) { h.Resource = "" }, "resource: required"},
		{func(h *Handler) { h.Resource = "/v1" }, "resource: must be an absolute URL"},
		{func(h *Handler) { h.Resource = "http://api.example/v1" }, "insecure_allow_http"},
		{func(h *Handler) { h.TokenEndpoint = "http://as.example/token" }, "token_endpoint:"},
		{func(h *Handler) { h.Issuer = "https://as.example/?t=1" }, "issuer: must not contain a query"},
		{func(h *Handler) { h.ClientID = "" }, "client_id: required"},
		{func(h *Handler) { h.Grant = "refresh_token" }, "refresh_token: required for grant refresh_token"},
		{func(h *Handler) { h.Grant = "password" }, "grant: unknown grant"},
		{func(h *Handler) { h.UpstreamErrors = []string{"teams"} }, "upstream_errors: unknown preset"},
		{func(h *Handler) { h.ErrorAliases = map[string]string{"x": "nope"} }, "error_alias:"},
		{func(h *Handler) { h.Scopes = []string{`a"b`} }, "scope: invalid scope"},
		{func(h *Handler) { h.ClientID = "{env.OAUTHGW_TEST_UNSET}" }, "client_id: {env.OAUTHGW_TEST_UNSET} expanded to nothing"},
		{func(h *Handler) { h.Resource = "{env.OAUTHGW_TEST_UNSET}/mcp" }, "resource: must be an absolute URL"},
		{func(h *Handler) { h.RefreshToken = "seed" }, "refresh_token: given with grant client_credentials"},
		{func(h *Handler) { h.Timeout = -1 }, "timeout: must be positive"},
		{func(h *Handler) { h.MaxScope = []string{""} }, "max_scope: invalid scope"},
		{func(h *Handler) { h.TrustedIssuers = []string{"http://as.example"} }, "trusted_issuers:"},
		{func(h *Handler) { h.Source = "Caddyfile:7"; h.ClientID = "" }, "oauth_gateway for https://api.example/v1 (Caddyfile:7): client_id: required"},
		// Issue 10: the exchange grants name what they miss.
		{func(h *Handler) { h.Grant = "id_jag"; h.SubjectToken = "{http.request.header.X-Id-Token}" }, "idp_token_endpoint: required for grant id_jag"},
		{func(h *Handler) { h.Grant = "id_jag"; h.IDPTokenEndpoint = "https://idp.example/token" }, "subject_token: required for grant id_jag"},
		{func(h *Handler) {
			h.Grant = "token_exchange"
			h.SubjectToken = "{http.request.header.Authorization}"
			h.SubjectTokenType = "saml"
		}, "subject_token_type: "},
		{func(h *Handler) { h.Grant = "token_exchange"; h.SubjectToken = "literal-token" }, "subject_token: must be one placeholder"},
		{func(h *Handler) { h.SubjectToken = "{http.request.header.X}" }, "subject_token: only with grant token_exchange or id_jag"},
		{func(h *Handler) {
			h.Grant = "id_jag"
			h.SubjectToken = "{http.request.header.X-Id-Token}"
			h.IDPTokenEndpoint = "http://idp.example/token"
		}, "idp_token_endpoint:"},
	}
	validate := func(h *Handler) error {
		cfg, err := h.expand()
		if err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("%s: %w", h.where(), err)
		}
		return nil
	}
	for _, c := range cases {
		h := base()
		c.mutate(&h)
		err := validate(&h)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want %q", err, c.want)
		}
	}
	h := base()
	if err := validate(&h); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	h.TokenEndpoint = "" // discovery
	if err := validate(&h); err != nil {
		t.Fatalf("discovery config rejected: %v", err)
	}
}

func TestGlobalOption(t *testing.T) {
	d := caddyfile.NewTestDispenser(`oauth_gateway {
		storage file /var/lib/x
		encryption_key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {env.OLD_KEY}
		cache_size 500
		refresh_skew 30s
	}`)
	v, err := parseGlobalOption(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	for _, want := range []string{`"type":"file"`, `"dir":"/var/lib/x"`, `"cache_size":500`, `{env.OLD_KEY}`} {
		if !strings.Contains(string(b), strings.ReplaceAll(want, `"`, `\"`)) && !strings.Contains(string(b), want) {
			t.Errorf("missing %s in %s", want, b)
		}
	}
	for input, wantErr := range map[string]string{
		"oauth_gateway {\n\tstorage s3\n}":                   "storage: unknown type",
		"oauth_gateway {\n\tencryption_key abc\n}":           "encryption_key 1",
		"oauth_gateway {\n\tcache_size -1\n}":                "cache_size",
		"oauth_gateway {\n\twhatever\n}":                     "unrecognized subdirective",
		"oauth_gateway {\n\trefresh_skew never\n}":           "refresh_skew",
		"oauth_gateway {\n\trefresh_skew -5s\n}":             `refresh_skew: "-5s": must be positive`,
		"oauth_gateway {\n\tcache_size 1\n\tcache_size 2\n}": "cache_size: given twice",
		"oauth_gateway {\n\tstorag memory\n}":                `(did you mean "storage"?)`,
	} {
		if _, err := parseGlobalOption(caddyfile.NewTestDispenser(input), nil); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", input, err, wantErr)
		}
	}
	// A second global block is an error, not a silent replacement.
	if _, err := parseGlobalOption(caddyfile.NewTestDispenser("oauth_gateway {\n\tcache_size 1\n}"), v); err == nil ||
		!strings.Contains(err.Error(), "given twice") {
		t.Errorf("second global block: %v", err)
	}
	if _, err := decodeKeys([]string{"{env.OAUTHGW_TEST_UNSET}"}); err == nil || !strings.Contains(err.Error(), "{env.OAUTHGW_TEST_UNSET} expanded to nothing") {
		t.Errorf("empty key placeholder: %v", err)
	}
}
