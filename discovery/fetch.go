package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"
)

// ErrNotFound is wrapped when no candidate URL produced a usable document.
var ErrNotFound = errors.New("discovery: no metadata found")

// ValidationError is a document that was found but does not match what
// was asked for (another resource, another issuer). It is never used.
type ValidationError struct {
	URL      string
	Field    string
	Expected string
	Got      string
	// Reason, when set, says why Got is refused (instead of Expected).
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("discovery: %s names %s %q: %s; not trusted", e.URL, e.Field, e.Got, e.Reason)
	}
	return fmt.Sprintf("discovery: %s names %s %q, expected %q; not trusted", e.URL, e.Field, e.Got, e.Expected)
}

// httpRefused is the Reason for an http URL where https is required.
const httpRefused = "http is allowed only with insecure_allow_http (development only)"

// requireHTTPS is the one rule for the scheme of URLs taken from metadata
// (TLS is required at these endpoints: RFC 6749 §3.1, §3.2; RFC 7591
// §5; RFC 8414 §2 for the issuer): unless AllowHTTP, every
// field the gateway contacts or sends a user to must be https, or the
// document from docURL is refused as a whole (a *ValidationError).
// fields alternate name, value; empty values are skipped. Fields the
// gateway never uses (jwks_uri, introspection_endpoint) are not checked;
// an http revocation_endpoint is left out by its user, not refused.
func (c *Client) requireHTTPS(docURL string, fields ...string) error {
	if c.AllowHTTP {
		return nil
	}
	for i := 0; i+1 < len(fields); i += 2 {
		name, val := fields[i], fields[i+1]
		if val == "" {
			continue
		}
		if u, err := url.Parse(val); err != nil || !strings.EqualFold(u.Scheme, "https") {
			return &ValidationError{URL: docURL, Field: name, Got: val, Reason: httpRefused}
		}
	}
	return nil
}

// Options configure a Client. Zero values take the defaults noted.
type Options struct {
	// Timeout bounds each fetch, body included (default 10s).
	Timeout time.Duration
	// MaxBodyBytes bounds each document (default 1 MiB).
	MaxBodyBytes int64
	// AllowHTTP permits http:// metadata URLs, and documents naming http
	// endpoints or authorization servers (development and tests).
	AllowHTTP bool
	// AllowPrivate permits every private, loopback and link-local
	// destination (169.254.169.254 included). For tests only: a gateway
	// should allow exactly the hosts it needs with AllowHosts.
	AllowPrivate bool
	// AllowHosts are destinations reachable even when they resolve to
	// private addresses. Each entry is "host" (that host name or literal
	// IP, any port) or "host:port" (only that port; IPv6 as
	// "[::1]:8443"). They match the host being dialed as written in the
	// URL (case-insensitively, IPv6 zone and brackets ignored, literal
	// IPs in canonical form), never what a name resolves to; malformed
	// entries (see CheckAllowHost) match nothing. HostPortOf gives the
	// entry for exactly one URL's host and port.
	AllowHosts []string
	// MaxCacheEntries bounds the number of cached URLs, documents and
	// misses together (default 64).
	MaxCacheEntries int
	// MaxCacheBytes bounds the total size of the cache, documents and
	// their URLs (default 4 MiB); the least recently used entries are
	// evicted to stay under it, and a document larger than it is not
	// cached.
	MaxCacheBytes int64
	// DefaultTTL is how long a document without Cache-Control max-age is
	// cached (default 1h).
	DefaultTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnFetch, if set, is told the outcome of every network fetch
	// ("found", "not_found", "blocked", "error").
	OnFetch func(outcome string)
}

// Client fetches and validates metadata, with a cache. Create it with
// NewClient; it is safe for concurrent use.
//
// Only documents that were validated (accepted for what was asked) are
// cached, and misses as an empty entry; the cache is a bounded LRU (see
// MaxCacheEntries, MaxCacheBytes).
type Client struct {
	Options
	httpClient *http.Client
	flight     singleflight.Group
	mu         sync.Mutex // guards cache and bytes
	cache      *simplelru.LRU[string, cached]
	bytes      int64 // cost of the cached entries (keys and bodies)
}

type cached struct {
	body    []byte // nil: a miss, cached briefly so a chain does not refetch
	expires time.Time
}

// fetched is the shared result of one network fetch.
type fetched struct {
	body []byte
	ttl  time.Duration
}

func entryCost(key string, e cached) int64 { return int64(len(key) + len(e.body)) }

// NewClient returns a Client with the options' defaults filled in.
func NewClient(c Options) *Client {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxCacheEntries <= 0 {
		c.MaxCacheEntries = 64
	}
	if c.MaxCacheBytes <= 0 {
		c.MaxCacheBytes = 4 << 20
	}
	out := &Client{Options: c}
	// The callback runs under out.mu: every cache call is made with it
	// held.
	out.cache, _ = simplelru.NewLRU(c.MaxCacheEntries, func(k string, e cached) { out.bytes -= entryCost(k, e) })
	out.httpClient = &http.Client{
		Transport: &http.Transport{
			DialContext:           guardedDialer(c.Timeout, c.AllowPrivate, c.AllowHosts),
			TLSHandshakeTimeout:   c.Timeout,
			ResponseHeaderTimeout: c.Timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// Same-origin redirects only: a document must come from
			// where it was asked for.
			if len(via) >= 3 || originOf(req.URL) != originOf(via[0].URL) {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return out
}

// HTTPClient is the guarded client (no private destinations unless
// allowed, same-origin redirects), for requests to discovered endpoints.
func (c *Client) HTTPClient() *http.Client { return c.httpClient }

// Invalidate drops url from the cache.
func (c *Client) Invalidate(u string) {
	c.mu.Lock()
	c.cache.Remove(u)
	c.mu.Unlock()
}

// InvalidateAll drops every cached document and miss: the next lookups
// fetch again (a resource that may have moved to another authorization
// server).
func (c *Client) InvalidateAll() {
	c.mu.Lock()
	c.cache.Purge()
	c.mu.Unlock()
}

// get returns the body of a usable (200, JSON) response for u, or nil for
// a miss, and whether it came from the cache. A fetched miss is cached
// here; a fetched body is not: the caller stores it with the returned TTL
// once it has validated it. Errors that are not misses are returned.
// Concurrent gets of one URL share a fetch; each stops waiting for it
// (with an error wrapping its context's) when its own context ends.
func (c *Client) get(ctx context.Context, u string) (body []byte, ttl time.Duration, hit bool, err error) {
	if err := c.checkURL(u); err != nil {
		return nil, 0, false, err
	}
	if ctx.Err() != nil {
		return nil, 0, false, fmt.Errorf("discovery: %s: %w", u, context.Cause(ctx))
	}
	now := c.Now()
	c.mu.Lock()
	if e, ok := c.cache.Get(u); ok {
		if now.Before(e.expires) {
			c.mu.Unlock()
			return e.body, 0, true, nil
		}
		c.cache.Remove(u)
	}
	c.mu.Unlock()

	// The shared fetch runs detached from the caller that started it
	// (bounded by Timeout in fetch): one caller's cancellation must not
	// fail the others waiting for it. Each caller stops waiting when its
	// own context ends.
	detached := context.WithoutCancel(ctx)
	ch := c.flight.DoChan(u, func() (any, error) {
		body, ttl, err := c.fetch(detached, u)
		if err != nil {
			return nil, err
		}
		if body == nil {
			c.store(u, nil, ttl)
		}
		return fetched{body, ttl}, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, 0, false, res.Err
		}
		f := res.Val.(fetched)
		return f.body, f.ttl, false, nil
	case <-ctx.Done():
		return nil, 0, false, fmt.Errorf("discovery: %s: %w", u, context.Cause(ctx))
	}
}

// store caches body (nil: a miss) for u for ttl, within the cache's
// bounds: the least recently used entries are evicted until the total
// cost is within MaxCacheBytes; an entry that alone exceeds it is not
// cached.
func (c *Client) store(u string, body []byte, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cache.Remove(u)
	e := cached{body: body, expires: c.Now().Add(ttl)}
	cost := entryCost(u, e)
	if ttl <= 0 || cost > c.MaxCacheBytes {
		return
	}
	c.cache.Add(u, e) // may evict the oldest entry (the callback adjusts c.bytes)
	c.bytes += cost
	for c.bytes > c.MaxCacheBytes {
		if _, _, ok := c.cache.RemoveOldest(); !ok {
			break
		}
	}
}

// cacheBytes is the total size of the cached bodies (for tests).
func (c *Client) cacheBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, k := range c.cache.Keys() {
		if e, ok := c.cache.Peek(k); ok {
			n += int64(len(e.body))
		}
	}
	return n
}

// cacheLen is the number of cached entries (for tests).
func (c *Client) cacheLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache.Len()
}

func (c *Client) checkURL(u string) error {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return fmt.Errorf("discovery: bad metadata URL %q", u)
	}
	switch pu.Scheme {
	case "https":
	case "http":
		if !c.AllowHTTP {
			return fmt.Errorf("discovery: %s: http metadata URLs are not allowed (https only; insecure_allow_http allows http for development)", u)
		}
	default:
		return fmt.Errorf("discovery: %s: scheme %q not allowed", u, pu.Scheme)
	}
	return nil
}

// fetch performs one request, bounded by Timeout. Misses (4xx, 5xx,
// non-JSON, HTML, unreachable) return a nil body and a short TTL; only
// blocked destinations are errors.
func (c *Client) fetch(ctx context.Context, u string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		if errors.Is(err, ErrBlockedDestination) {
			c.report("blocked")
			return nil, 0, fmt.Errorf("%w (%s)", ErrBlockedDestination, u)
		}
		c.report("error")
		// An unreachable candidate is a miss for the chain, cached
		// briefly.
		return nil, time.Minute, nil
	}
	defer resp.Body.Close()
	miss := 5 * time.Minute
	if resp.StatusCode != http.StatusOK || !isJSONType(resp.Header.Get("Content-Type")) {
		c.report("not_found")
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, miss, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxBodyBytes+1))
	if err != nil || int64(len(body)) > c.MaxBodyBytes {
		c.report("error")
		return nil, miss, nil
	}
	c.report("found")
	return body, c.ttl(resp.Header.Get("Cache-Control")), nil
}

func (c *Client) report(outcome string) {
	if c.OnFetch != nil {
		c.OnFetch(outcome)
	}
}

// ttl honours Cache-Control max-age and no-store (RFC 9728 §7.10).
func (c *Client) ttl(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		if d == "no-store" || d == "no-cache" {
			return 0
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.Atoi(strings.Trim(v, `"`)); err == nil && n >= 0 {
				return min(time.Duration(n)*time.Second, 24*time.Hour)
			}
		}
	}
	return c.DefaultTTL
}

func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// ProtectedResource finds and validates the RFC 9728 document for
// resource. It tries the challenge's resource_metadata URLs first (each
// candidate: a malformed header may name several), then the
// path-inserted and root well-known URLs, and returns the first document
// whose `resource` matches (and, unless AllowHTTP, names only https
// authorization servers), with the URL it came from. Mismatched
// documents are skipped; if nothing matched but something mismatched, the
// *ValidationError is returned.
func (c *Client) ProtectedResource(ctx context.Context, resource string, challengeURLs []string) (*ProtectedResourceMetadata, string, error) {
	wellKnown, err := ProtectedResourceMetadataURLs(resource)
	if err != nil {
		return nil, "", err
	}
	if err := c.checkURL(resource); err != nil {
		return nil, "", err
	}
	root := wellKnown[len(wellKnown)-1]
	candidates := append(append([]string(nil), challengeURLs...), wellKnown...)
	return firstValid(ctx, c, candidates, "resource "+resource, func(u string, body []byte) (*ProtectedResourceMetadata, error) {
		m, err := DecodeProtectedResourceMetadata(body)
		if err != nil {
			return nil, err
		}
		if !ResourceMatches(resource, m.Resource, u == root) {
			return nil, &ValidationError{URL: u, Field: "resource", Expected: resource, Got: m.Resource}
		}
		for _, as := range m.AuthorizationServers {
			if err := c.requireHTTPS(u, "authorization_servers", as); err != nil {
				return nil, err
			}
		}
		return m, nil
	})
}

// AuthServer finds and validates the metadata of issuer: RFC 8414 first,
// then OpenID Connect discovery. The document's issuer must match, and
// unless AllowHTTP its token, authorization and registration endpoints
// must be https.
func (c *Client) AuthServer(ctx context.Context, issuer string) (*AuthServerMetadata, error) {
	urls, err := AuthorizationServerMetadataURLs(issuer)
	if err != nil {
		return nil, err
	}
	if err := c.checkURL(issuer); err != nil {
		return nil, err
	}
	m, _, err := firstValid(ctx, c, urls, "issuer "+issuer, func(u string, body []byte) (*AuthServerMetadata, error) {
		m, err := DecodeAuthServerMetadata(body)
		if err != nil {
			return nil, err
		}
		if !IssuerMatches(issuer, m.Issuer) {
			return nil, &ValidationError{URL: u, Field: "issuer", Expected: issuer, Got: m.Issuer}
		}
		if err := c.requireHTTPS(u, "token_endpoint", m.TokenEndpoint, "authorization_endpoint", m.AuthorizationEndpoint,
			"registration_endpoint", m.RegistrationEndpoint); err != nil {
			return nil, err
		}
		return m, nil
	})
	return m, err
}

// firstValid walks candidate URLs in order and returns the first document
// accept takes, with its URL. Misses and undecodable documents continue
// the chain; a blocked destination ends it; if nothing was accepted, the
// first *ValidationError (a document that was found but not trusted) is
// returned, else ErrNotFound.
func firstValid[T any](ctx context.Context, c *Client, urls []string, what string, accept func(u string, body []byte) (T, error)) (T, string, error) {
	var zero T
	var firstMismatch error
	for _, u := range urls {
		body, ttl, hit, err := c.get(ctx, u)
		if err != nil {
			if errors.Is(err, ErrBlockedDestination) || ctx.Err() != nil {
				// Blocked, or the caller stopped waiting.
				return zero, "", err
			}
			continue
		}
		if body == nil {
			continue
		}
		doc, err := accept(u, body)
		var ve *ValidationError
		switch {
		case err == nil:
			if !hit {
				// Only validated documents are cached.
				c.store(u, body, ttl)
			}
			return doc, u, nil
		case errors.As(err, &ve) && firstMismatch == nil:
			firstMismatch = err
		}
	}
	if firstMismatch != nil {
		return zero, "", firstMismatch
	}
	return zero, "", fmt.Errorf("%w for %s", ErrNotFound, what)
}

// Transport is the guarded transport (private destinations refused unless
// allowed), for requests to discovered endpoints such as a token endpoint.
func (c *Client) Transport() http.RoundTripper { return c.httpClient.Transport }
