package integration

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
)

// An instance SIGKILLed between the token response and its store write
// takes the only copy of the new pair with it: the server has spent the
// refresh token the store still holds. No gateway can keep that pair;
// what it can do is wait out the dead instance's lease (so a live one is
// never raced), then present the stored token once. A server with a
// reuse grace (Okta up to 60 s, Atlassian 10 min) answers with a new
// pair and nothing is lost (TestChaos/KilledBetweenTokenResponseAndStoreWrite);
// a strict one (Keycloak, Auth0 by default) revokes the family, and
// exactly that credential needs an operator, which its clients are told
// (TestChaosKilledMidRefreshStrictServer).

// killMidRefresh kills every instance while one of them holds a refresh
// answer it has not stored, and starts them again. The fake server holds
// the next successful refresh's answer until each instance's link to
// Redis drops what the instance sends (toxiproxy's timeout toxic), then
// lets it go: the instance that asked reads the new pair and its write
// goes nowhere. l, when not nil, is told which instances are down. It
// returns the client id of the credential whose answer was lost.
func (r *chaosRig) killMidRefresh(t *testing.T, l *chaosLoad) string {
	t.Helper()
	stalled := make(chan string, 1)
	var once atomic.Bool
	var toxicErr atomic.Pointer[string]
	hold := func(e fakeoauth.TokenRequestLog) {
		if e.Grant != "refresh_token" || e.Status != http.StatusOK || !once.CompareAndSwap(false, true) {
			return
		}
		// Not AddToxic: this runs on the server's goroutine, not the test's.
		for _, p := range r.redisProxies {
			_, err := p.p.Toxics.AddToxicJson(strings.NewReader(`{"name":"stall","type":"timeout","stream":"upstream","toxicity":1,"attributes":{"timeout":0}}`))
			if err != nil {
				msg := err.Error()
				toxicErr.Store(&msg)
			}
		}
		// Token requests arriving from now on wait (and die with their
		// instance), so no second answer is lost beside this one.
		r.as.SetLatency(time.Minute)
		stalled <- e.ClientID
	}
	r.onAnswer.Store(&hold)
	var victim string
	select {
	case victim = <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("no refresh was answered within 30s")
	}
	r.onAnswer.Store(nil)
	if msg := toxicErr.Load(); msg != nil {
		t.Fatalf("stalling the Redis links: %s", *msg)
	}
	// The answer is on its way; the instance's write is not.
	time.Sleep(500 * time.Millisecond)
	for i, n := range r.nodes {
		if l != nil {
			l.down[i].Store(true)
			l.epoch[i].Add(1)
		}
		n.Kill()
	}
	for _, p := range r.redisProxies {
		p.RemoveToxic("stall")
	}
	r.as.SetLatency(0)
	for i, n := range r.nodes {
		n.start(nil)
		if l != nil {
			l.down[i].Store(false)
		}
	}
	t.Logf("killed every instance while the answer to %s's refresh was not stored", victim)
	return victim
}

// chaosKillMidRefresh is the chaos scenario at a server with a reuse
// grace of 60 s (Okta's longest): every invariant holds, the lost answer
// costs that credential the dead instance's lease (503s), and the stored
// refresh token is presented exactly once more, inside the grace.
func chaosKillMidRefresh(t *testing.T, d time.Duration) {
	r := newChaosRig(t, func(o *fakeoauth.AuthServerOptions) { o.ReuseGrace = time.Minute })
	r.startStandalone(redistest.Start(t).Addr)
	r.runChaos(t.Name(), func(l *chaosLoad) {
		start := time.Now()
		r.killMidRefresh(t, l)
		l.endFault()
		time.Sleep(d - time.Since(start))
	})
	// The stored token was the spent one (the new pair died with the
	// instance), and it was presented once, not raced.
	if n := r.as.GraceReuses(); n != 1 {
		t.Errorf("spent refresh tokens presented within the grace: %d, want 1 (the one whose answer was lost)", n)
	}
}

// TestChaosKilledMidRefreshStrictServer: at a strict server the credential
// whose answer died with the instance is lost, and only it: the others
// serve on every instance, its clients get 503 with Retry-After while the
// dead instance's lease lasts and then a 502 telling an operator to
// provide a new refresh token, and the spent token is presented once.
func TestChaosKilledMidRefreshStrictServer(t *testing.T) {
	chaosDuration(t) // skips outside make chaos; the scenario has no fault duration
	r := newChaosRig(t)
	r.startStandalone(redistest.Start(t).Addr)
	client := &http.Client{Timeout: 20 * time.Second}
	// Requests for every credential on the first instance until a refresh
	// is answered (tokens live 2 s).
	done := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			chaosRequest(client, r.nodes[0].URL(r.creds[i%len(r.creds)].prefix+"/echo"), i%2 == 0, i)
		}
	}()
	victim := r.killMidRefresh(t, nil)
	close(done)
	killed := time.Now()

	for c, cred := range r.creds {
		if cred.clientID == victim {
			continue
		}
		for i, n := range r.nodes {
			for {
				out, detail := chaosRequest(client, n.URL(cred.prefix+"/echo"), c%2 == 0, c)
				if out == outOK {
					break
				}
				if time.Since(killed) > chaosRecovery {
					t.Fatalf("%s on instance %d: %s %s", cred.clientID, i, out, detail)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	}

	prefix := ""
	for _, c := range r.creds {
		if c.clientID == victim {
			prefix = c.prefix
		}
	}
	waits := 0
	for {
		resp, err := client.Get(r.nodes[1].URL(prefix + "/echo"))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(raw)
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && time.Since(killed) < 90*time.Second {
			waits++
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "invalid_grant") || !strings.Contains(body, "an operator must provide a new refresh token") {
			t.Fatalf("the lost credential answered %d %s after %s", resp.StatusCode, body, time.Since(killed).Round(time.Second))
		}
		t.Logf("the lost credential answered 503 with Retry-After %d times over %s (the dead instance's lease), then: %d %s",
			waits, time.Since(killed).Round(100*time.Millisecond), resp.StatusCode, body)
		break
	}
	if n := r.as.ReuseDetections(); n != 1 {
		t.Errorf("reuse detections %d, want 1: the stored (spent) refresh token presented once, after the lease", n)
	}
}
