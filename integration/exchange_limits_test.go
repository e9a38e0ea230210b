package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// clientFrom is an HTTP client whose connections come from local (a
// loopback address: 127.0.0.0/8 is all this host's), so Caddy sees
// another peer address.
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 16,
	}}
}

// Security finding (LOW): 1,000 distinct junk subject tokens from one
// client through a real Caddy reach the authorization server at most
// burst + rate × elapsed times (defaults per client: 4 + 2 a second, as
// the README states); beyond that the client gets 429 with Retry-After.
// Another client (another address) with a valid subject token is still
// served, then from the cache. No subject token reaches the log, and the
// throttling is one WARN line and a metric.
func TestExchangeJunkSubjectTokensAreRateLimited(t *testing.T) {
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	good := "opaque-token-of-grace-" + randomHex(8)
	e.as.AddSubjectToken(good, "grace")
	site := e.gatewaySite("grant token_exchange", "subject_token {http.request.header.Authorization}")
	c := startCaddy(t, site, caddyOptions{Env: e.secretEnv()})
	const grant = "urn:ietf:params:oauth:grant-type:token-exchange"

	junk := make([]string, 1000)
	prefix := "junk-" + randomHex(6) + "-"
	for i := range junk {
		junk[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	attacker := clientFrom("127.0.0.1")
	var mu sync.Mutex
	statuses := map[int]int{}
	var bad []string
	next := make(chan string)
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tok := range next {
				req, _ := http.NewRequest(http.MethodGet, c.URL("/echo"), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := attacker.Do(req)
				if err != nil {
					t.Error(err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests {
					var answer struct {
						Error       string `json:"error"`
						Description string `json:"error_description"`
					}
					retry, rerr := strconv.Atoi(resp.Header.Get("Retry-After"))
					if rerr != nil || retry < 1 || json.Unmarshal(body, &answer) != nil || answer.Error != "temporarily_unavailable" ||
						!strings.Contains(answer.Description, "from this client") || resp.Header.Get("Content-Type") != "application/json" {
						bad = append(bad, fmt.Sprintf("Retry-After %q %s %s", resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body))
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, tok := range junk {
		next <- tok
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	exchanges := e.as.TokenRequests(grant)
	bound := 4 + int(2*elapsed.Seconds())
	t.Logf("1,000 junk subject tokens in %v: %d token-exchange requests at the authorization server (bound %d); answers %v",
		elapsed, exchanges, bound, statuses)
	if exchanges > bound {
		t.Fatalf("%d token-exchange requests reached the authorization server in %v, want at most %d (burst 4 + 2 a second)", exchanges, elapsed, bound)
	}
	if statuses[http.StatusUnauthorized] != exchanges || statuses[http.StatusTooManyRequests] != 1000-exchanges {
		t.Fatalf("answers %v: want %d refusals (401), the rest 429", statuses, exchanges)
	}
	if len(bad) > 0 {
		t.Fatalf("%d 429 answers without Retry-After or a JSON error, e.g. %s", len(bad), bad[0])
	}

	// A legitimate client at another address: served, then from the
	// cache (one exchange for all its requests).
	legit := clientFrom("127.0.0.2")
	for i := range 10 {
		req, _ := http.NewRequest(http.MethodGet, c.URL("/echo"), nil)
		req.Header.Set("Authorization", "Bearer "+good)
		resp, err := legit.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || decodeEcho(t, body).Subject != "grace" {
			t.Fatalf("legitimate client, request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := e.as.TokenRequests(grant) - exchanges; n != 1 {
		t.Fatalf("%d exchanges for the legitimate client's 10 requests, want 1", n)
	}

	// The metric counts the refused exchanges; one WARN line says so.
	resp, err := http.Get(c.AdminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`caddy_oauth_gateway_exchanges_throttled_total{scope="client"} %d`, 1000-exchanges); !strings.Contains(string(b), want) {
		t.Errorf("metrics lack %s", want)
	}
	if n := debugLines(c.Logs(), `"level":"warn"`, "token exchanges throttled"); n != 1 {
		t.Errorf("%d throttle WARN lines for %d throttled requests, want 1", n, 1000-exchanges)
	}
	assertNoSecrets(t, c.Logs(), e.secrets(append(junk, good)...)...)
}
