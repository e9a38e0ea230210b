package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
)

// TestChaos injects one fault per subtest into a fleet under load (see
// chaos_helpers_test.go) and asserts, for each: no refresh-token reuse
// at the authorization server, no credential lost (every instance serves
// every credential again within chaosRecovery of the fault's end, with no
// operator action), clients only ever see 200 or 503 with Retry-After,
// and about one token request per credential per token lifetime.
func TestChaos(t *testing.T) {
	d := chaosDuration(t)
	started := time.Now()
	defer func() {
		t.Logf("chaos suite with CHAOS_DURATION=%s took %s", d, time.Since(started).Round(time.Second))
	}()

	// 1. Redis restarts mid-load: with an append-only file it keeps
	// the records; without persistence it comes back empty and the
	// instances must write their in-memory pairs back (never fall back
	// to a spent seed).
	t.Run("RedisRestartAOF", func(t *testing.T) {
		chaosRedisRestart(t, d, "--appendonly", "yes", "--appendfsync", "always")
	})
	t.Run("RedisRestartNoPersistence", func(t *testing.T) {
		chaosRedisRestart(t, d)
	})

	// 2. One instance cut off from Redis (its proxy disabled: connections
	// closed, new ones refused) while the others keep refreshing.
	t.Run("InstancePartitionedFromRedis", func(t *testing.T) {
		r := newChaosRig(t)
		r.startStandalone(redistest.Start(t).Addr)
		partition := min(10*time.Second, d)
		r.runChaos(t.Name(), func(l *chaosLoad) {
			r.redisProxies[0].Disable()
			time.Sleep(partition)
			r.redisProxies[0].Enable()
			l.endFault()
			time.Sleep(d - partition)
		})
	})

	// 3. An instance SIGKILLed every 5 s and started again, for the
	// whole run.
	t.Run("InstanceKilledEvery5s", func(t *testing.T) {
		r := newChaosRig(t)
		r.startStandalone(redistest.Start(t).Addr)
		kills := 0
		r.runChaos(t.Name(), func(l *chaosLoad) {
			for end := time.Now().Add(d); time.Now().Before(end); {
				next := time.Now().Add(5 * time.Second)
				i := kills % len(r.nodes)
				l.down[i].Store(true)
				l.epoch[i].Add(1)
				r.nodes[i].Kill()
				r.nodes[i].start(nil)
				l.down[i].Store(false)
				kills++
				time.Sleep(time.Until(next))
			}
		})
		t.Logf("%d kills", kills)
	})

	// 3b. Every instance SIGKILLed while one of them holds a refresh
	// answer it has not written to Redis (chaos_midrefresh_test.go), at a
	// server with a reuse grace: nothing is lost. At a strict server that
	// one credential cannot survive (TestChaosKilledMidRefreshStrictServer).
	t.Run("KilledBetweenTokenResponseAndStoreWrite", func(t *testing.T) {
		chaosKillMidRefresh(t, d)
	})

	// 4. The authorization server slow (5 s more per response), then
	// resetting connections (before the request reaches it), then
	// answering 5xx, then 429 with Retry-After, a quarter of the run each.
	t.Run("AuthServerFaults", func(t *testing.T) {
		r := newChaosRig(t)
		r.startStandalone(redistest.Start(t).Addr)
		phase := d / 4
		r.runChaos(t.Name(), func(l *chaosLoad) {
			r.asProxy.AddToxic("slow", "latency", "downstream", `{"latency":5000}`)
			time.Sleep(phase)
			r.asProxy.RemoveToxic("slow")
			r.asProxy.AddToxic("reset", "reset_peer", "upstream", `{"timeout":0}`)
			time.Sleep(phase)
			r.asProxy.RemoveToxic("reset")
			r.failFor(phase, http.StatusInternalServerError, `{"error":"server_error"}`, "application/json", nil)
			r.failFor(phase, http.StatusTooManyRequests, `{"error":"slow_down"}`, "application/json", http.Header{"Retry-After": {"2"}})
		})
	})
}

// chaosRedisRestart stops the fleet's Redis for 3 s mid-run and starts
// it again with the same arguments.
func chaosRedisRestart(t *testing.T, d time.Duration, args ...string) {
	rs := redistest.Start(t, args...)
	r := newChaosRig(t)
	r.startStandalone(rs.Addr)
	r.runChaos(t.Name(), func(l *chaosLoad) {
		time.Sleep(d / 3)
		l.beginFault()
		rs.Stop()
		time.Sleep(3 * time.Second)
		rs.Restart()
		l.endFault()
		time.Sleep(d - d/3 - 3*time.Second)
	})
}

// failFor keeps a few injected failures queued at the authorization
// server for d: every token request meanwhile gets them.
func (r *chaosRig) failFor(d time.Duration, status int, body, contentType string, hdr http.Header) {
	const queued = 3
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := r.as.PendingFailures(); n < queued {
			r.as.FailNext(queued-n, status, body, contentType, hdr)
		}
	}
}
