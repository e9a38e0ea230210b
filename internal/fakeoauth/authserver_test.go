package fakeoauth

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClientCredentialsRecordsWhatTheClientSent(t *testing.T) {
	as := newAS(t, AuthServerOptions{AccessTTL: 30 * time.Second})
	ans := postToken(t, as, basic(cc("read write", "https://r.example/mcp")))
	if ans.status != http.StatusOK || ans.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("answer %d %v %s", ans.status, ans.header, ans.raw)
	}
	if ans.json["expires_in"] != float64(30) || ans.str("token_type") != "Bearer" || ans.json["refresh_token"] != nil {
		t.Fatalf("body %s", ans.raw)
	}
	at := ans.str("access_token")
	if s, ok := as.ValidateFor(at, "https://r.example/mcp"); !ok || !slices.Equal(s, []string{"read", "write"}) {
		t.Fatalf("ValidateFor = %v %v", s, ok)
	}
	if _, ok := as.ValidateFor(at, "https://other.example/"); ok {
		t.Fatal("a token for one resource validated at another (RFC 8707)")
	}
	if _, ok := as.Validate(at); !ok {
		t.Fatal("Validate ignores the audience")
	}
	want := TokenRequestLog{Grant: "client_credentials", ClientID: "c1", AuthMethod: "client_secret_basic",
		Scope: "read write", Resource: "https://r.example/mcp", Accept: "application/json", Status: 200}
	got := as.Requests()[0]
	got.Time = time.Time{}
	if got != want {
		t.Fatalf("log %+v, want %+v", got, want)
	}
	if as.TokenRequests("client_credentials") != 1 || as.TokenRequests("") != 1 || as.TokenRequests("refresh_token") != 0 {
		t.Fatal("counters")
	}
}

// RFC 6749 §2.3.1: id and secret are form-urlencoded before base64; a
// client that skips it fails once the secret holds a reserved character.
func TestBasicAuthNeedsFormEncoding(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	as.AddClient("client:1", "p+a%2Fss w")
	ok := postToken(t, as, tokenCall{form: cc("", ""), basicID: "client:1", basicSecret: "p+a%2Fss w"})
	if ok.status != http.StatusOK {
		t.Fatalf("form-encoded basic: %d %s", ok.status, ok.raw)
	}
	raw := postToken(t, as, tokenCall{form: cc("", ""), basicID: "client:1", basicSecret: "p+a%2Fss w", rawBasic: true})
	if raw.status != http.StatusUnauthorized || raw.str("error") != "invalid_client" || !strings.HasPrefix(raw.header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("raw basic: %d %v %s", raw.status, raw.header, raw.raw)
	}
}

func TestClientSecretPostAndMethodRules(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	form := cc("", "")
	form.Set("client_id", "c1")
	form.Set("client_secret", "s1")
	if ans := postToken(t, as, tokenCall{form: form}); ans.status != http.StatusOK {
		t.Fatalf("post: %d %s", ans.status, ans.raw)
	}
	if m := as.Requests()[0].AuthMethod; m != "client_secret_post" {
		t.Fatalf("method %q", m)
	}
	both := tokenCall{form: form, basicID: "c1", basicSecret: "s1"}
	if ans := postToken(t, as, both); ans.status != http.StatusBadRequest || ans.str("error") != "invalid_request" {
		t.Fatalf("two methods: %d %s", ans.status, ans.raw)
	}
	wrong := url.Values{"grant_type": {"client_credentials"}, "client_id": {"c1"}, "client_secret": {"nope"}}
	if ans := postToken(t, as, tokenCall{form: wrong}); ans.status != http.StatusUnauthorized || ans.str("error") != "invalid_client" {
		t.Fatalf("bad secret: %d %s", ans.status, ans.raw)
	}
	if ans := postToken(t, as, tokenCall{form: cc("", "")}); ans.status != http.StatusUnauthorized {
		t.Fatalf("no client auth: %d %s", ans.status, ans.raw)
	}

	basicOnly := newAS(t, AuthServerOptions{AuthMethods: []string{"client_secret_basic"}})
	if ans := postToken(t, basicOnly, tokenCall{form: form}); ans.status != http.StatusUnauthorized {
		t.Fatalf("post to a basic-only server: %d %s", ans.status, ans.raw)
	}
}

func TestAllowedScopesPerClient(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	as.AddClient("narrow", "pw", "read")
	call := tokenCall{form: cc("read", ""), basicID: "narrow", basicSecret: "pw"}
	if ans := postToken(t, as, call); ans.status != http.StatusOK {
		t.Fatalf("allowed scope: %d %s", ans.status, ans.raw)
	}
	call.form = cc("read admin", "")
	if ans := postToken(t, as, call); ans.status != http.StatusBadRequest || ans.str("error") != "invalid_scope" {
		t.Fatalf("disallowed scope: %d %s", ans.status, ans.raw)
	}
	if l := as.Requests(); l[1].Error != "invalid_scope" || l[1].Status != 400 {
		t.Fatalf("log %+v", l[1])
	}
}

func TestRefreshWithoutRotationKeepsTheToken(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	rt := as.IssueRefreshToken("c1", []string{"read", "write"})
	for i := range 2 {
		ans := postToken(t, as, basic(refreshForm(rt)))
		if ans.status != http.StatusOK || ans.json["refresh_token"] != nil || ans.str("scope") != "read write" {
			t.Fatalf("refresh %d: %d %s", i, ans.status, ans.raw)
		}
	}
	// A refresh may narrow scope, never widen it (RFC 6749 §6).
	narrow := refreshForm(rt)
	narrow.Set("scope", "read")
	if ans := postToken(t, as, basic(narrow)); ans.status != http.StatusOK || ans.str("scope") != "read" {
		t.Fatalf("narrowing: %d %s", ans.status, ans.raw)
	}
	narrow.Set("scope", "read admin")
	if ans := postToken(t, as, basic(narrow)); ans.str("error") != "invalid_scope" {
		t.Fatalf("widening: %d %s", ans.status, ans.raw)
	}
	// Another client cannot use it.
	as.AddClient("c2", "s2")
	if ans := postToken(t, as, tokenCall{form: refreshForm(rt), basicID: "c2", basicSecret: "s2"}); ans.str("error") != "invalid_grant" {
		t.Fatalf("foreign client: %d %s", ans.status, ans.raw)
	}
}

func TestRotationAndReuseDetection(t *testing.T) {
	as := newAS(t, AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true})
	rt1 := as.IssueRefreshToken("c1", []string{"read"})
	a1 := postToken(t, as, basic(refreshForm(rt1)))
	rt2 := a1.str("refresh_token")
	if a1.status != http.StatusOK || rt2 == "" || rt2 == rt1 {
		t.Fatalf("first refresh: %d %s", a1.status, a1.raw)
	}
	a2 := postToken(t, as, basic(refreshForm(rt2)))
	rt3, at2 := a2.str("refresh_token"), a2.str("access_token")
	if a2.status != http.StatusOK || rt3 == "" {
		t.Fatalf("second refresh: %d %s", a2.status, a2.raw)
	}
	if as.ReuseDetections() != 0 {
		t.Fatal("reuse counted on a clean rotation")
	}

	// rt1 again: reuse. The family dies, rt3 and at2 with it.
	if ans := postToken(t, as, basic(refreshForm(rt1))); ans.status != http.StatusBadRequest || ans.str("error") != "invalid_grant" {
		t.Fatalf("reuse: %d %s", ans.status, ans.raw)
	}
	if as.ReuseDetections() != 1 {
		t.Fatalf("reuse detections %d", as.ReuseDetections())
	}
	if _, ok := as.Validate(at2); ok {
		t.Fatal("the family's access token survived reuse detection")
	}
	if ans := postToken(t, as, basic(refreshForm(rt3))); ans.str("error") != "invalid_grant" {
		t.Fatalf("family member after reuse: %d %s", ans.status, ans.raw)
	}
	// A spent token presented after the family died still counts.
	postToken(t, as, basic(refreshForm(rt2)))
	if as.ReuseDetections() != 2 {
		t.Fatalf("reuse detections %d, want 2", as.ReuseDetections())
	}
	// Other families are untouched.
	other := as.IssueRefreshToken("c1", nil)
	if ans := postToken(t, as, basic(refreshForm(other))); ans.status != http.StatusOK {
		t.Fatalf("unrelated family: %d %s", ans.status, ans.raw)
	}
	if as.TokenRequests("refresh_token") != 6 {
		t.Fatalf("refresh requests %d", as.TokenRequests("refresh_token"))
	}
}

func TestReuseWithoutFamilyRevocation(t *testing.T) {
	as := newAS(t, AuthServerOptions{Rotate: true})
	rt1 := as.IssueRefreshToken("c1", nil)
	rt2 := postToken(t, as, basic(refreshForm(rt1))).str("refresh_token")
	if ans := postToken(t, as, basic(refreshForm(rt1))); ans.str("error") != "invalid_grant" {
		t.Fatalf("spent token: %s", ans.raw)
	}
	if ans := postToken(t, as, basic(refreshForm(rt2))); ans.status != http.StatusOK {
		t.Fatalf("the current token died without RevokeFamilyOnReuse: %s", ans.raw)
	}
	if as.ReuseDetections() != 1 {
		t.Fatal("reuse not counted")
	}
}

// Concurrent presentations of one rotating token: exactly one wins; the
// rest are reuse. This is the race a gateway fleet must never run.
func TestConcurrentRefreshOneWinner(t *testing.T) {
	as := newAS(t, AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true, Latency: 5 * time.Millisecond})
	rt := as.IssueRefreshToken("c1", nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if postToken(t, as, basic(refreshForm(rt))).status == http.StatusOK {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 || as.ReuseDetections() != 7 {
		t.Fatalf("wins %d, reuse %d; want 1 and 7", wins, as.ReuseDetections())
	}
}

func TestFailureInjection(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	as.FailNext(1, http.StatusInternalServerError, "<html>oops</html>", "text/html", nil)
	as.FailNext(1, http.StatusTooManyRequests, `{"error":"slow_down"}`, "application/json", http.Header{"Retry-After": {"2"}})
	as.FailNext(1, http.StatusBadRequest, `{"error":"invalid_grant"}`, "application/json", nil)
	if as.PendingFailures() != 3 {
		t.Fatal("pending")
	}
	a := postToken(t, as, basic(cc("", "")))
	if a.status != 500 || a.raw != "<html>oops</html>" || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Fatalf("first: %d %v %s", a.status, a.header, a.raw)
	}
	a = postToken(t, as, basic(cc("", "")))
	if a.status != 429 || a.header.Get("Retry-After") != "2" {
		t.Fatalf("second: %d %v", a.status, a.header)
	}
	if a = postToken(t, as, basic(cc("", ""))); a.status != 400 || a.str("error") != "invalid_grant" {
		t.Fatalf("third: %d %s", a.status, a.raw)
	}
	if a = postToken(t, as, basic(cc("", ""))); a.status != 200 {
		t.Fatalf("after the failures: %d %s", a.status, a.raw)
	}
	log := as.Requests()
	if !log[0].Injected || log[3].Injected || as.TokenRequests("") != 4 {
		t.Fatalf("log %+v", log)
	}
}

func TestLatency(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	as.SetLatency(100 * time.Millisecond)
	start := time.Now()
	postToken(t, as, basic(cc("", "")))
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("answered in %s", d)
	}
}

func TestSlackErrors(t *testing.T) {
	as := newAS(t, AuthServerOptions{SlackErrors: true})
	a := postToken(t, as, basic(refreshForm("rt_unknown")))
	if a.status != 200 || a.json["ok"] != false || a.str("error") != "invalid_refresh_token" {
		t.Fatalf("slack error: %d %s", a.status, a.raw)
	}
	if a = postToken(t, as, basic(cc("", ""))); a.status != 200 || a.json["ok"] != true || a.str("access_token") == "" {
		t.Fatalf("slack success: %d %s", a.status, a.raw)
	}
}

func TestGitHubStyle(t *testing.T) {
	as := newAS(t, AuthServerOptions{GitHubStyle: true})
	form := postToken(t, as, tokenCall{form: refreshForm("rt_unknown"), basicID: "c1", basicSecret: "s1", accept: "-"})
	v, _ := url.ParseQuery(form.raw)
	if form.status != 200 || !strings.HasPrefix(form.header.Get("Content-Type"), "application/x-www-form-urlencoded") || v.Get("error") != "bad_refresh_token" {
		t.Fatalf("form error: %d %v %s", form.status, form.header, form.raw)
	}
	ok := postToken(t, as, tokenCall{form: cc("", ""), basicID: "c1", basicSecret: "s1", accept: "*/*"})
	if v, _ := url.ParseQuery(ok.raw); v.Get("access_token") == "" || v.Get("token_type") != "Bearer" {
		t.Fatalf("form success: %s", ok.raw)
	}
	js := postToken(t, as, basic(refreshForm("rt_unknown")))
	if js.status != 200 || js.str("error") != "bad_refresh_token" {
		t.Fatalf("json error: %d %s", js.status, js.raw)
	}
	if as.Requests()[1].Accept != "*/*" {
		t.Fatal("Accept not recorded")
	}
}

func TestRevokeAllAndInvalidate(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	rt := as.IssueRefreshToken("c1", nil)
	atFamily := postToken(t, as, basic(refreshForm(rt))).str("access_token")
	atCC := postToken(t, as, basic(cc("", ""))).str("access_token")

	as.InvalidateAccessTokens()
	for _, at := range []string{atFamily, atCC} {
		if _, ok := as.Validate(at); ok {
			t.Fatal("access token survived InvalidateAccessTokens")
		}
	}
	atFamily = postToken(t, as, basic(refreshForm(rt))).str("access_token")
	atCC = postToken(t, as, basic(cc("", ""))).str("access_token")

	as.RevokeAll()
	if _, ok := as.Validate(atFamily); ok {
		t.Fatal("a revoked family's access token validates")
	}
	if _, ok := as.Validate(atCC); !ok {
		t.Fatal("RevokeAll killed a client_credentials token")
	}
	if a := postToken(t, as, basic(refreshForm(rt))); a.str("error") != "invalid_grant" {
		t.Fatalf("revoked refresh: %d %s", a.status, a.raw)
	}
	if len(as.IssuedSecrets()) != 5 {
		t.Fatalf("issued %d", len(as.IssuedSecrets()))
	}
}

func TestRevocationEndpoint(t *testing.T) {
	as := newAS(t, AuthServerOptions{})
	rt := as.IssueRefreshToken("c1", nil)
	at := postToken(t, as, basic(refreshForm(rt))).str("access_token")
	revoke := func(tok, hint string) int {
		req, _ := http.NewRequest(http.MethodPost, as.RevocationURL(), strings.NewReader(url.Values{"token": {tok}, "token_type_hint": {hint}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("c1", "s1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if revoke(rt, "refresh_token") != 200 || revoke(at, "access_token") != 200 || revoke("unknown", "") != 200 {
		t.Fatal("revocation status")
	}
	if _, ok := as.Validate(at); ok {
		t.Fatal("revoked access token validates")
	}
	if a := postToken(t, as, basic(refreshForm(rt))); a.str("error") != "invalid_grant" {
		t.Fatal("revoked refresh token works")
	}
	if got := as.Revocations(); !slices.Equal(got, []string{"refresh_token", "access_token", ""}) {
		t.Fatalf("revocations %v", got)
	}
}

func TestOmitExpiresIn(t *testing.T) {
	as := newAS(t, AuthServerOptions{OmitExpiresIn: true})
	if a := postToken(t, as, basic(cc("", ""))); a.json["expires_in"] != nil || a.str("access_token") == "" {
		t.Fatal(a.raw)
	}
}

func TestRejectResource(t *testing.T) {
	as := newAS(t, AuthServerOptions{RejectResource: true})
	// Entra ID v2 refuses resource next to scope with invalid_request
	// and an AADSTS901002 description (the option's documented behaviour).
	if a := postToken(t, as, basic(cc("read", "https://r.example/"))); a.status != 400 || a.str("error") != "invalid_request" ||
		!strings.Contains(a.str("error_description"), "AADSTS901002") {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	for _, form := range []url.Values{cc("", ""), cc("read", ""), cc("", "https://r.example/")} {
		if a := postToken(t, as, basic(form)); a.status != 200 {
			t.Fatalf("%v: %d %s", form, a.status, a.raw)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	as := newAS(t, AuthServerOptions{AccessTTL: 50 * time.Millisecond})
	at := postToken(t, as, basic(cc("", ""))).str("access_token")
	if _, ok := as.Validate(at); !ok {
		t.Fatal("fresh token invalid")
	}
	time.Sleep(80 * time.Millisecond)
	if _, ok := as.Validate(at); ok {
		t.Fatal("expired token validates")
	}
}

// With a reuse grace (Okta, Atlassian), a spent token presented again
// soon after is honoured once more in the same family; later it is reuse.
func TestReuseGrace(t *testing.T) {
	as := newAS(t, AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true, ReuseGrace: 200 * time.Millisecond})
	rt1 := as.IssueRefreshToken("c1", nil)
	lost := postToken(t, as, basic(refreshForm(rt1))).str("refresh_token") // an answer the client never read
	again := postToken(t, as, basic(refreshForm(rt1)))
	rt2 := again.str("refresh_token")
	if again.status != http.StatusOK || rt2 == "" || rt2 == lost {
		t.Fatalf("within the grace: %d %s", again.status, again.raw)
	}
	if as.GraceReuses() != 1 || as.ReuseDetections() != 0 {
		t.Fatalf("grace reuses %d, detections %d", as.GraceReuses(), as.ReuseDetections())
	}
	time.Sleep(250 * time.Millisecond)
	if ans := postToken(t, as, basic(refreshForm(rt1))); ans.str("error") != "invalid_grant" {
		t.Fatalf("after the grace: %d %s", ans.status, ans.raw)
	}
	if as.ReuseDetections() != 1 {
		t.Fatalf("reuse after the grace not counted: %d", as.ReuseDetections())
	}
	if ans := postToken(t, as, basic(refreshForm(rt2))); ans.str("error") != "invalid_grant" {
		t.Fatalf("the family survived reuse after the grace: %s", ans.raw)
	}
}
