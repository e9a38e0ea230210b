package redact

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
)

func secret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "s3cr" + hex.EncodeToString(b)
}

func TestNoSecretSurvives(t *testing.T) {
	s := secret()
	h := http.Header{"Authorization": {"Bearer " + s}, "Dpop": {s}, "Cookie": {"a=" + s}, "Accept": {"x"}}
	for k, vs := range Header(h) {
		if strings.Contains(strings.Join(vs, ""), s) {
			t.Errorf("header %s kept the secret", k)
		}
	}
	if h.Get("Authorization") != "Bearer "+s {
		t.Error("Header changed its input")
	}
	cases := map[string]string{
		"url":       URL("https://as.example/cb?code=" + s + "&state=" + s + "&x=1"),
		"url-user":  URL("https://user:" + s + "@as.example/"),
		"url-frag":  URL("https://app.example/#access_token=" + s),
		"form":      Form("grant_type=refresh_token&refresh_token=" + s + "&client_secret=" + s + "&code_verifier=" + s),
		"json":      string(JSON([]byte(`{"access_token":"` + s + `","nested":{"id_token":"` + s + `","list":[{"refresh_token":"` + s + `"}]},"ok":1}`))),
		"json-bad":  string(JSON([]byte(`{"access_token":"` + s))),
		"scrub":     Scrub("refresh token "+s+" is invalid", s),
		"assertion": Form("client_assertion=" + s + "&subject_token=" + s),
	}
	for name, out := range cases {
		if strings.Contains(out, s) {
			t.Errorf("%s kept the secret: %s", name, out)
		}
	}
	if !strings.Contains(cases["url"], "x=1") || !strings.Contains(cases["json"], `"ok":1`) {
		t.Errorf("non-secret data lost: %s %s", cases["url"], cases["json"])
	}
	if URL("%zz") != "REDACTED-URL" {
		t.Error("malformed URL not replaced")
	}
	if fp := Token(s); !strings.HasPrefix(fp, "sha256:") || len(fp) != 15 || strings.Contains(fp, s) {
		t.Errorf("fingerprint %q", fp)
	}
}
