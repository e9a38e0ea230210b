package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// exchange_rate and exchange_rate_per_client: parsed, mapped onto the
// gateway's Config, validated only with the exchange grants.
func TestExchangeRateSubdirectives(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth_gateway {
		resource        https://api.example/v1
		token_endpoint  https://as.example/token
		client_id       c1
		grant           token_exchange
		subject_token   {http.request.header.Authorization}
		exchange_rate   50 80
		exchange_rate_per_client 0.5
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	for _, want := range []string{`"exchange_rate":50`, `"exchange_burst":80`, `"exchange_rate_per_client":0.5`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("JSON %s lacks %s", got, want)
		}
	}
	if strings.Contains(string(got), "exchange_burst_per_client") {
		t.Errorf("JSON %s: a burst left out must stay out (the gateway's default)", got)
	}
	cfg, err := h.expand()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.ExchangeRate != 50 || cfg.ExchangeBurst != 80 || cfg.ExchangeClientRate != 0.5 || cfg.ExchangeClientBurst != 1 {
		t.Fatalf("config %v/%d per client %v/%d, want 50/80 and 0.5/1", cfg.ExchangeRate, cfg.ExchangeBurst, cfg.ExchangeClientRate, cfg.ExchangeClientBurst)
	}

	// Defaults.
	h.ExchangeRate, h.ExchangeBurst, h.ExchangeRatePerClient = 0, 0, 0
	if cfg, err = h.expand(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.ExchangeRate != 20 || cfg.ExchangeBurst != 40 || cfg.ExchangeClientRate != 2 || cfg.ExchangeClientBurst != 4 {
		t.Fatalf("defaults %v/%d per client %v/%d, want 20/40 and 2/4", cfg.ExchangeRate, cfg.ExchangeBurst, cfg.ExchangeClientRate, cfg.ExchangeClientBurst)
	}

	// Only with the exchange grants.
	other := Handler{Resource: "https://api.example/v1", TokenEndpoint: "https://as.example/token", ClientID: "c", ExchangeRatePerClient: 3}
	cfg, err = other.expand()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "exchange_rate_per_client: only with grant token_exchange or id_jag") {
		t.Fatalf("exchange_rate_per_client with client_credentials: %v", err)
	}
}

func TestExchangeRateSubdirectiveErrors(t *testing.T) {
	for input, wantErr := range map[string]string{
		"oauth_gateway {\n\texchange_rate\n}":                           "exchange_rate: want <per_second> [<burst>]",
		"oauth_gateway {\n\texchange_rate 1 2 3\n}":                     "exchange_rate: want <per_second> [<burst>]",
		"oauth_gateway {\n\texchange_rate fast\n}":                      `exchange_rate: want a positive number of exchanges per second, got "fast"`,
		"oauth_gateway {\n\texchange_rate 0\n}":                         `exchange_rate: want a positive number`,
		"oauth_gateway {\n\texchange_rate -1\n}":                        `exchange_rate: want a positive number`,
		"oauth_gateway {\n\texchange_rate Inf\n}":                       `exchange_rate: want a positive number`,
		"oauth_gateway {\n\texchange_rate 10 0\n}":                      `exchange_rate: want a positive burst, got "0"`,
		"oauth_gateway {\n\texchange_rate_per_client 1 1.5\n}":          `exchange_rate_per_client: want a positive burst, got "1.5"`,
		"oauth_gateway {\n\texchange_rate 1\n\texchange_rate 2\n}":      "exchange_rate: given twice",
		"oauth_gateway {\n\texchange_rates 1\n}":                        `unrecognized subdirective exchange_rates (did you mean "exchange_rate"?)`,
		"oauth_gateway {\n\texchange_rate_per_client 1 2\n\tx y\n}":     "unrecognized subdirective x",
		"oauth_gateway {\n\texchange_rate 1e9\n\tresource https://x\n}": "", // parsed; refused by validation below
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", input, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", input, err, wantErr)
		}
	}
	h := Handler{Resource: "https://api.example/v1", TokenEndpoint: "https://as.example/token", ClientID: "c",
		Grant: "token_exchange", SubjectToken: "{http.request.header.Authorization}", ExchangeRate: 1e9}
	cfg, err := h.expand()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "exchange_rate: the rate must be a positive number of exchanges per second, at most 1000000") {
		t.Fatalf("exchange_rate 1e9: %v", err)
	}
}
