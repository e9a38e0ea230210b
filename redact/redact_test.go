package redact

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
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

func TestScrubEncodedForms(t *testing.T) {
	// Characters every encoding changes: reserved, '%', space, non-ASCII,
	// and bytes whose base64 differs between the standard and URL alphabets.
	for _, sec := range []string{secret(), "p@ss:w%rd+&= /?#é\xfb\xff", "abcd", "ab?>~"} {
		b := []byte(sec)
		forms := []struct{ name, form string }{
			{"plain", sec},
			{"QueryEscape", url.QueryEscape(sec)},
			{"PathEscape", url.PathEscape(sec)},
			{"StdEncoding", base64.StdEncoding.EncodeToString(b)},
			{"RawStdEncoding", base64.RawStdEncoding.EncodeToString(b)},
			{"URLEncoding", base64.URLEncoding.EncodeToString(b)},
			{"RawURLEncoding", base64.RawURLEncoding.EncodeToString(b)},
		}
		for _, f := range forms {
			t.Run(f.name+"/"+url.PathEscape(sec), func(t *testing.T) {
				out := Scrub("server said: <"+f.form+"> rejected", sec)
				if want := "server said: <" + Redacted + "> rejected"; out != want {
					t.Fatalf("Scrub = %q, want %q", out, want)
				}
			})
		}
	}
}

func TestScrubLeavesShortSecretsAndOtherText(t *testing.T) {
	if out := Scrub("abc is fine, YWJj too", "abc", ""); out != "abc is fine, YWJj too" {
		t.Fatalf("short secret scrubbed: %q", out)
	}
	if Forms("abc") != nil || Forms("") != nil {
		t.Fatal("forms of a short secret")
	}
	if out := Scrub("nothing secret here", "s3cret-value"); out != "nothing secret here" {
		t.Fatalf("%q", out)
	}
}

func TestClientSecretForms(t *testing.T) {
	id := "client:with space"
	// "xy" is too short to scrub alone, but the Basic values built from it
	// are not.
	for _, sec := range []string{"p@ss:w%rd+&=", secret(), "xy"} {
		basic := BasicCredentials(id, sec)
		if want := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(sec))); basic != want {
			t.Fatalf("BasicCredentials = %q, want %q", basic, want)
		}
		forms := []struct{ name, form string }{
			{"basic header", "Basic " + basic},
			{"basic value", basic},
			{"basic value url-encoded", url.QueryEscape(basic)},
			{"plain base64 id:secret", base64.StdEncoding.EncodeToString([]byte(id + ":" + sec))},
			{"form body", "client_id=" + url.QueryEscape(id) + "&client_secret=" + url.QueryEscape(sec)},
		}
		for _, f := range forms {
			t.Run(f.name+"/"+url.PathEscape(sec), func(t *testing.T) {
				out := Scrub("echo: "+f.form, ClientSecretForms(id, sec)...)
				if strings.Contains(out, basic) || (len(sec) >= 4 && (strings.Contains(out, sec) || strings.Contains(out, url.QueryEscape(sec)))) {
					t.Fatalf("kept a secret form: %q", out)
				}
				if (len(sec) >= 4 || f.name != "form body") && !strings.Contains(out, Redacted) {
					t.Fatalf("nothing redacted: %q", out)
				}
			})
		}
	}
	if ClientSecretForms("id", "") != nil {
		t.Fatal("forms for an empty secret")
	}
}
