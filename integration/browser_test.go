package integration

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// browserTimeout bounds a whole browser test: start, flow and shutdown.
const browserTimeout = 60 * time.Second

// chromiumPath finds Debian's chromium. The tests need it (.ci/run and
// `make -f xcaddy.mk test-deps` install it), so a missing one fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal("chromium not found: install it (apt-get install chromium, or make -f xcaddy.mk test-deps)")
	return ""
}

// startBrowser starts a headless Chromium with a fresh profile and returns
// a tab's context. The browser answers the gateway's basic_auth challenges
// as user: the Fetch domain pauses every request (continued unchanged) and
// reports each authentication challenge, which gets user's credentials when
// it comes from the gateway's origin and is cancelled otherwise. Cleanup
// closes the browser.
func startBrowser(t *testing.T, gateway, user string) context.Context {
	t.Helper()
	ctx, cancelTimeout := context.WithTimeout(t.Context(), browserTimeout)
	logf, err := os.Create(filepath.Join(t.TempDir(), "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(logf),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))

	origin := strings.TrimSuffix(gateway, "/")
	paused := chromedp.Events(tab, fetch.RequestPaused)
	challenges := chromedp.Events(tab, fetch.AuthRequired)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var answered int
	fail := func(format string, args ...any) {
		if tab.Err() == nil {
			t.Errorf(format, args...)
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev, err := range paused {
			if err != nil {
				fail("requestPaused: %v", err)
				return
			}
			if _, err := chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID}); err != nil {
				fail("continue %s: %v", ev.Request.URL, err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range challenges {
			if err != nil {
				fail("authRequired: %v", err)
				return
			}
			answer := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			mu.Lock()
			// A few answers at most: wrong credentials must not loop.
			if ev.AuthChallenge.Origin == origin && strings.EqualFold(ev.AuthChallenge.Scheme, "basic") && answered < 5 {
				answered++
				answer = &fetch.AuthChallengeResponse{
					Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: user, Password: password(user),
				}
			}
			mu.Unlock()
			if _, err := chromedp.Call(tab, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{
				RequestID: ev.RequestID, AuthChallengeResponse: answer,
			}); err != nil {
				fail("continueWithAuth %s: %v", ev.Request.URL, err)
			}
		}
	}()
	handleAuth := true
	if _, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handleAuth}); err != nil {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		wg.Wait()
		t.Fatalf("starting chromium: %v\n%s", err, readTail(logf.Name()))
	}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		wg.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("chromium output:\n%s", readTail(logf.Name()))
		}
	})
	return tab
}

// readTail is the end of Chromium's output, without the complaints about
// the missing D-Bus, which every run in a container has.
func readTail(path string) string {
	b, _ := os.ReadFile(path)
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, ":ERROR:dbus/") {
			keep = append(keep, l)
		}
	}
	return tail(strings.Join(keep, "\n"), 40)
}

// Acceptance: a real browser, signed in to the gateway with basic_auth,
// opens a protected URL, is sent to the authorization server's login page,
// continues there as its user and lands on the upstream's response.
func TestBrowserConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Env: e.secretEnv()})
	tab := startBrowser(t, c.URL(""), "alice")

	// The gateway sends the browser into the flow: the login page.
	if err := chromedp.Do(tab,
		chromedp.Navigate(c.URL("/echo?from=browser")),
		chromedp.WaitVisible(chromedp.ID("user-alice")),
	); err != nil {
		loc, _ := chromedp.Run(tab, chromedp.Location())
		t.Fatalf("login page: %v (at %s)", err, loc)
	}
	loginURL, err := chromedp.Run(tab, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loginURL, e.as.URL()) {
		t.Fatalf("login page at %s, want the authorization server %s", loginURL, e.as.URL())
	}
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			p := filepath.Join(t.TempDir(), "consent.jpg")
			if os.WriteFile(p, shot, 0o600) == nil {
				t.Logf("consent page screenshot: %s", p)
			}
		}
	})

	// Continue as alice: the decision redirects to the gateway's
	// callback, which redirects back to where the browser started.
	echoURL := c.URL("/echo")
	if _, err := chromedp.Run(tab, chromedp.WaitEvent(page.FrameNavigated,
		func(ev page.EventFrameNavigated) bool {
			return ev.Frame.ParentID == "" && strings.HasPrefix(ev.Frame.URL, echoURL)
		},
		chromedp.Click(chromedp.ID("user-alice"), chromedp.NodeVisible))); err != nil {
		loc, _ := chromedp.Run(tab, chromedp.Location())
		t.Fatalf("after consent: %v (at %s)", err, loc)
	}
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](`document.readyState === "complete"`)); err != nil {
		t.Fatal(err)
	}
	final, err := chromedp.Run(tab, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(final)
	if err != nil || u.Path != "/echo" || u.RawQuery != "from=browser" || !strings.HasPrefix(final, c.URL("/")) {
		t.Fatalf("landed on %s, want %s", final, c.URL("/echo?from=browser"))
	}
	var echo echoReply
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatalf("upstream reply %q: %v", body, err)
	}
	if echo.Subject != "alice" {
		t.Fatalf("upstream saw subject %q, want alice (%s)", echo.Subject, body)
	}
	auths := e.as.Authorizations()
	if len(auths) != 1 || auths[0].User != "alice" || auths[0].Denied {
		t.Fatalf("authorizations %+v, want one for alice", auths)
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}
