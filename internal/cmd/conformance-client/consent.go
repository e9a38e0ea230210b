package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// maxConsents bounds how often one run plays the consenting user: the
// first authorization, then step-ups. It is deliberately above the 3
// authorization requests the suite's scope-retry-limit scenario allows:
// that limit must come from the gateway, not from a user who gives up.
const maxConsents = 5

// Codes the gateway answers with when a user must consent first (see
// gateway/elicit.go): URL elicitation (MCP 2025-11-25 and later), and the
// implementation-defined error of earlier revisions, whose message
// carries the URL.
const (
	codeURLElicitationRequired = -32042
	codeAuthorizationRequired  = -32001
)

var startURLPattern = regexp.MustCompile(`https?://[^\s"'<>]+/\.oauth/start[^\s"'<>]*`)

// consentURL returns the URL a user must open, when err is the gateway's
// answer that consent is needed.
func consentURL(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	var rpcErr *jsonrpc.Error
	if errors.As(err, &rpcErr) {
		switch rpcErr.Code {
		case codeURLElicitationRequired:
			var data struct {
				Elicitations []struct {
					Mode string `json:"mode"`
					URL  string `json:"url"`
				} `json:"elicitations"`
			}
			if json.Unmarshal(rpcErr.Data, &data) == nil {
				for _, e := range data.Elicitations {
					if e.Mode == "url" && e.URL != "" {
						return e.URL, true
					}
				}
			}
		case codeAuthorizationRequired:
		default:
			return "", false
		}
		if m := startURLPattern.FindString(rpcErr.Message); m != "" {
			return m, true
		}
		return "", false
	}
	// A plain 401 authorization_required names authorization_url in its
	// body; SDK errors may quote it.
	if m := startURLPattern.FindString(err.Error()); m != "" {
		return m, true
	}
	return "", false
}

// user plays the person at the browser: it opens the gateway's start URL
// (authenticated to Caddy, as the MCP client is), follows the redirects
// through the authorization server, which approves at once, back to the
// gateway's callback.
type user struct {
	origin         string // Caddy's origin: only there are the credentials sent
	name, password string
	client         *http.Client
	consents       int
	// hint is the authorization_url of the last plain HTTP 401
	// authorization_required answer (see transport): the SDK's error
	// for such an answer carries only the status.
	hint authHint
}

// authHint holds an authorization_url seen in a 401 body.
type authHint struct {
	mu  sync.Mutex
	url string
}

func (h *authHint) set(u string) { h.mu.Lock(); h.url = u; h.mu.Unlock() }

func (h *authHint) take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.url
	h.url = ""
	return u
}

// noteAuthorizationRequired records the authorization_url of a 401
// authorization_required body, leaving the response readable.
func (h *authHint) noteAuthorizationRequired(resp *http.Response) {
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return
	}
	var v struct {
		Error            string `json:"error"`
		AuthorizationURL string `json:"authorization_url"`
	}
	if json.Unmarshal(b, &v) == nil && v.Error == "authorization_required" && v.AuthorizationURL != "" {
		log.Printf("the gateway answered HTTP 401 authorization_required (not a JSON-RPC answer) naming %s", v.AuthorizationURL)
		h.set(v.AuthorizationURL)
	}
}

func newUser(origin string, p *profile) *user {
	return &user{
		origin: origin, name: p.user, password: p.password,
		client: &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// consent completes one authorization flow from start.
func (u *user) consent(ctx context.Context, start string) error {
	if u.consents >= maxConsents {
		return fmt.Errorf("the gateway asked for consent again after %d consents; giving up", u.consents)
	}
	u.consents++
	log.Printf("consent %d: opening %s", u.consents, start)
	next := start
	for hop := 0; hop < 10; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "text/html")
		if sameOrigin(next, u.origin) && u.name != "" {
			req.SetBasicAuth(u.name, u.password)
		}
		resp, err := u.client.Do(req)
		if err != nil {
			return fmt.Errorf("consent: GET %s: %w", redactQuery(next), err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		log.Printf("consent %d: GET %s -> %d%s", u.consents, redactQuery(next), resp.StatusCode, locationNote(loc))
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "":
			base, _ := url.Parse(next)
			l, err := base.Parse(loc)
			if err != nil {
				return fmt.Errorf("consent: bad Location %q", loc)
			}
			next = l.String()
			if sameOrigin(next, u.origin) && !strings.Contains(l.Path, "/.oauth/") {
				// Back at the gateway, outside the flow: the return_to.
				return nil
			}
		case resp.StatusCode == http.StatusOK && sameOrigin(next, u.origin):
			log.Printf("consent %d: the gateway says: %s", u.consents, pageText(body))
			return nil
		default:
			return fmt.Errorf("consent: GET %s answered %d: %s", redactQuery(next), resp.StatusCode, pageText(body))
		}
	}
	return fmt.Errorf("consent: too many redirects")
}

func sameOrigin(a, origin string) bool {
	u, err := url.Parse(a)
	return err == nil && u.Scheme+"://"+u.Host == origin
}

// redactQuery drops query values that carry codes and states from log lines.
func redactQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for _, k := range []string{"code", "state", "code_challenge"} {
		if q.Has(k) {
			q.Set(k, "…")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func locationNote(loc string) string {
	if loc == "" {
		return ""
	}
	return " Location: " + redactQuery(loc)
}

var tagPattern = regexp.MustCompile(`<[^>]*>`)

// pageText is an HTML page's text, shortened.
func pageText(b []byte) string {
	s := tagPattern.ReplaceAllString(string(b), " ")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// withConsent runs call; when the gateway answers that consent is needed,
// the user consents and call runs again. When that answer was a plain
// HTTP 401, after which the Go SDK closes its session, reconnect (if not
// nil) opens a new one first.
func withConsent(ctx context.Context, u *user, what string, call, reconnect func() error) error {
	for {
		if u != nil {
			u.hint.take()
		}
		err := call()
		start, ok := consentURL(err)
		via401 := false
		if !ok && err != nil && u != nil {
			start = u.hint.take()
			ok, via401 = start != "", start != ""
		}
		if !ok {
			return err
		}
		log.Printf("%s: the gateway asks for consent: %v", what, err)
		if u == nil {
			return fmt.Errorf("%s: %w (and this profile has no user to consent)", what, err)
		}
		if cerr := u.consent(ctx, start); cerr != nil {
			return fmt.Errorf("%s: %w", what, cerr)
		}
		if via401 && reconnect != nil {
			log.Printf("%s: the SDK closed its session on that HTTP 401; reconnecting", what)
			if rerr := reconnect(); rerr != nil {
				return fmt.Errorf("%s: reconnecting: %w", what, rerr)
			}
		}
	}
}
