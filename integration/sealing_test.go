package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
	"github.com/oauthgw/caddy-oauth-gateway/internal/redistest"
)

// Security finding "the encrypted store reads only what it sealed itself",
// end to end: a real Caddy with encryption_key on a real Redis. Someone
// with write access to Redis (not the key) overwrites two users'
// credentials: alice's with a plaintext record carrying the attacker's
// refresh token, bob's with an older sealed value of his own captured
// earlier (its refresh token since spent). The next request that needs the
// store answers the documented 502 naming encryption_key, on the instance
// that holds the credentials and after a restart; neither refresh token
// reaches the authorization server, and the records are left as they are.
func TestSealingRedisPlantedAndRestoredRecordsFailClosed(t *testing.T) {
	r := redistest.Start(t)
	e := newEnv(t, fakeoauth.AuthServerOptions{Rotate: true, RevokeFamilyOnReuse: true}, fakeoauth.UpstreamOptions{})
	prefix := "sealing" + randomHex(4)
	global := fmt.Sprintf("\toauth_gateway {\n\t\tstorage redis %s {\n\t\t\tkey_prefix %s\n\t\t}\n\t\tencryption_key {env.TEST_KEY}\n\t}", r.URL(), prefix)
	envs := append(e.secretEnv(), "TEST_KEY=BgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgY=")
	c := startCaddy(t, e.perUserSite(t, e.confidentialClient()...), caddyOptions{Global: global, Env: envs})
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()

	echoAs := func(user string) (int, string) {
		resp, body := step(t, http.MethodGet, c.URL("/echo"), user, nil)
		return resp.StatusCode, body
	}
	for _, u := range []string{"alice", "bob"} {
		if resp, body := connect(t, c.URL("/mcp/.oauth/start"), u); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s's callback: %d %s", u, resp.StatusCode, body)
		}
		if status, body := echoAs(u); status != http.StatusOK || decodeEcho(t, []byte(body)).Subject != u {
			t.Fatalf("%s: %d %s", u, status, body)
		}
	}
	keyOf := map[string]string{}
	for _, st := range listCredentials(t, c) {
		keyOf[st.Principal] = "{" + prefix + ":" + st.ID + "}:rec"
	}
	hget := func(user, field string) string {
		t.Helper()
		v, err := rdb.HGet(ctx, keyOf[user], field).Result()
		if err != nil {
			t.Fatalf("%s's record: %v", user, err)
		}
		return v
	}
	// bob's sealed record as it is now; then a refresh (an operator's,
	// so the reactive refresh below is not throttled as a repeat) spends
	// its refresh token and writes a newer generation.
	bobOld, bobOldGen := hget("bob", "data"), hget("bob", "gen")
	for _, st := range listCredentials(t, c) {
		if status, body := adminDo(t, c, http.MethodPost, "/oauth_gateway/credentials/"+st.ID+"/refresh", ""); status != http.StatusOK {
			t.Fatalf("refreshing %s's credential: %d %s", st.Principal, status, body)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if status, body := echoAs(u); status != http.StatusOK {
			t.Fatalf("%s after a refresh: %d %s", u, status, body)
		}
	}
	if gen := hget("bob", "gen"); gen == bobOldGen {
		t.Fatalf("bob's generation is still %s after a refresh", gen)
	}

	// The attacker's refresh token is one the server accepts: presented,
	// it would connect alice to the attacker's grant.
	attackerRT := e.as.IssueRefreshToken(e.clientID, []string{"read", "write"})
	aliceID := strings.TrimSuffix(strings.TrimPrefix(keyOf["alice"], "{"+prefix+":"), "}:rec")
	planted, _ := json.Marshal(map[string]any{
		"id": aliceID, "generation": 99, "grant": "authorization_code", "client_id": e.clientID,
		"resource": e.up.Resource(), "issuer": e.as.Issuer(), "token_endpoint": e.as.TokenURL(),
		"refresh_token": attackerRT, "updated_at": time.Now(),
	})
	if err := rdb.HSet(ctx, keyOf["alice"], "data", planted).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, keyOf["bob"], "data", bobOld).Err(); err != nil {
		t.Fatal(err)
	}
	stored := map[string]map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		stored[u] = rdb.HGetAll(ctx, keyOf[u]).Val()
	}
	requestsBefore := len(e.as.Requests())

	failsClosed := func(when string) {
		t.Helper()
		for _, u := range []string{"alice", "bob"} {
			status, body := echoAs(u)
			if status != http.StatusBadGateway || !strings.Contains(body, "encryption_key") {
				t.Fatalf("%s, %s: %d %s, want 502 naming encryption_key", when, u, status, body)
			}
		}
	}
	// The instance that holds both credentials, once their tokens are
	// rejected and it must read the store.
	e.as.InvalidateAccessTokens()
	failsClosed("on the instance that holds them")
	// A restarted instance, with nothing in memory.
	c.Restart()
	failsClosed("after a restart")

	for _, req := range e.as.Requests()[requestsBefore:] {
		t.Errorf("token request after the store was tampered with: %s (refresh token %s)", req.Grant,
			map[bool]string{true: "the attacker's", false: "another"}[req.RefreshToken == attackerRT])
	}
	for _, req := range e.as.Requests() {
		if req.RefreshToken == attackerRT {
			t.Fatal("the attacker's refresh token reached the authorization server")
		}
	}
	if n := e.as.ReuseDetections(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}
	for _, u := range []string{"alice", "bob"} {
		if now := rdb.HGetAll(ctx, keyOf[u]).Val(); fmt.Sprint(now) != fmt.Sprint(stored[u]) {
			t.Fatalf("%s's tampered record was changed", u)
		}
	}
	assertNoSecrets(t, c.Logs(), e.secrets()...)
}
