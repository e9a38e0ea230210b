package fakeoauth

import (
	"encoding/json"
	"net/http"
	"testing"
)

func getJSON(t *testing.T, url string) (int, string, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header.Get("Content-Type"), m
}

func TestMetadataLocationsForPathIssuer(t *testing.T) {
	as := newAS(t, AuthServerOptions{IssuerPath: "/tenant1"})
	urls := []string{
		as.URL() + "/.well-known/oauth-authorization-server/tenant1",
		as.URL() + "/.well-known/openid-configuration/tenant1",
		as.URL() + "/tenant1/.well-known/openid-configuration",
	}
	if as.OAuthMetadataURL() != urls[0] || as.OIDCMetadataURL() != urls[2] {
		t.Fatalf("URL helpers: %s %s", as.OAuthMetadataURL(), as.OIDCMetadataURL())
	}
	for _, u := range urls {
		status, _, m := getJSON(t, u)
		if status != 200 || m["issuer"] != as.Issuer() || m["token_endpoint"] != as.URL()+"/tenant1/token" || m["revocation_endpoint"] != as.RevocationURL() {
			t.Fatalf("%s: %d %v", u, status, m)
		}
		for _, k := range []string{"token_endpoint_auth_methods_supported", "scopes_supported", "grant_types_supported"} {
			if _, ok := m[k].([]any); !ok {
				t.Fatalf("%s lacks %s", u, k)
			}
		}
	}
	if as.MetadataFetches() != 3 || as.MetadataFetchesAt("/tenant1/.well-known/openid-configuration") != 1 {
		t.Fatalf("fetches %d", as.MetadataFetches())
	}
	// Anything else is the SPA catch-all: HTML 200, not a document.
	if status, ct, m := getJSON(t, as.URL()+"/.well-known/oauth-authorization-server"); status != 200 || ct == "application/json" || m != nil {
		t.Fatalf("catch-all: %d %s", status, ct)
	}
}

func TestMetadataSwitches(t *testing.T) {
	as := newAS(t, AuthServerOptions{IssuerPath: "/t", DisableOAuthMetadata: true, MetadataIssuer: "https://evil.example/t"})
	if status, _, _ := getJSON(t, as.OAuthMetadataURL()); status != 404 {
		t.Fatalf("disabled OAuth metadata answered %d", status)
	}
	if _, _, m := getJSON(t, as.OIDCMetadataURL()); m["issuer"] != "https://evil.example/t" {
		t.Fatalf("issuer override: %v", m["issuer"])
	}
	oidcOff := newAS(t, AuthServerOptions{DisableOIDCMetadata: true})
	if status, _, _ := getJSON(t, oidcOff.OIDCMetadataURL()); status != 404 {
		t.Fatal("disabled OIDC metadata answered")
	}
	if status, _, m := getJSON(t, oidcOff.OAuthMetadataURL()); status != 200 || m["issuer"] != oidcOff.URL() {
		t.Fatalf("root issuer metadata: %d %v", status, m)
	}
}
