package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// endpoints are where a credential's tokens come from.
type endpoints struct {
	Issuer             string
	TokenEndpoint      string
	RevocationEndpoint string
	AuthMethods        []string
	ScopesSupported    []string
	// ResourceScopes is the protected resource metadata's
	// scopes_supported (nil when not discovered from it): step-up may ask
	// for these.
	ResourceScopes []string
	// Resource is the protected resource metadata's `resource` when
	// discovery read it ("" otherwise): the RFC 8707 resource parameter,
	// also when the configured resource is a longer form of it.
	Resource string
	// discovered is set when the issuer came from protected resource
	// metadata (the upstream's word), not from the configuration.
	discovered bool
	// The authorization-code flow's endpoints and capabilities.
	AuthorizationEndpoint string
	RegistrationEndpoint  string
	PKCE                  bool // S256 in code_challenge_methods_supported
	IssRequired           bool // RFC 9207 authorization_response_iss_parameter_supported
	CIMD                  bool // client_id_metadata_document_supported
	AuthServerScopes      []string
}

// withFlow copies the authorization-code fields of as into ep.
func (ep *endpoints) withFlow(as *discovery.AuthServerMetadata) *endpoints {
	ep.AuthorizationEndpoint = as.AuthorizationEndpoint
	ep.RegistrationEndpoint = as.RegistrationEndpoint
	ep.PKCE = as.SupportsPKCE()
	ep.IssRequired = as.AuthorizationResponseIssParameterSupported
	ep.CIMD = as.ClientIDMetadataDocumentSupported
	ep.AuthServerScopes = as.ScopesSupported
	return ep
}

// resolver finds a handler's endpoints: the configured token endpoint, or
// RFC 8414 / OIDC metadata of the configured issuer, or RFC 9728 protected
// resource metadata of the resource and then its authorization server's
// metadata. Results are cached; a challenge that brings a different
// resource_metadata URL makes the next lookup revalidate.
type resolver struct {
	static *endpoints // configured token endpoint: no discovery
	// client fetches metadata (also with a static token endpoint, to read
	// the configured issuer's revocation endpoint).
	client   *discovery.Client
	resource string
	issuer   string // configured issuer, if any
	// revocation is the configured revocation_endpoint, if any.
	revocation string
	logger     *zap.Logger

	flight singleflight.Group
	mu     sync.Mutex
	cached *endpoints
	expiry time.Time
	// challengeURLs and challengeScope come from the latest upstream
	// challenge.
	challengeURLs  []string
	challengeScope string
	stale          bool
	// legacyMCP enables the MCP 2025-03-26 fallback for servers without
	// protected resource metadata (authorization-code credentials).
	legacyMCP bool
	// resourceScopesRead is the resource's scopes_supported read for the
	// step-up bound when discovery did not run, until resourceScopesExpiry.
	resourceScopesRead   []string
	resourceScopesExpiry time.Time
	// lastRevalidation: the last refetch after an accepted token was
	// rejected (revalidate).
	lastRevalidation time.Time
	// lastProbe: the last probe for a challenge before consent.
	lastProbe time.Time
	// lastRediscovery limits how often an upstream's challenges can make
	// the gateway fetch new metadata (and request a token).
	lastRediscovery time.Time
	// timeout bounds one shared discovery (default discoverTimeout).
	timeout time.Duration
}

// rediscoveryInterval is the least time between two re-discoveries an
// upstream's challenges trigger for one credential: an upstream naming a
// new resource_metadata URL on every 401 must not drive fetches (and token
// requests) one to one.
const rediscoveryInterval = 30 * time.Second

// legacyEndpoints is the MCP 2025-03-26 fallback: without protected
// resource metadata, the MCP server's origin is the authorization server.
// Its RFC 8414 metadata is used when it has some, else the default
// /authorize, /token and /register endpoints there.
func (r *resolver) legacyEndpoints(ctx context.Context) (*endpoints, error) {
	u, err := url.Parse(r.resource)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Host
	as, err := r.client.AuthServer(ctx, origin)
	switch {
	case err == nil:
		r.logger.Debug("no protected resource metadata; using the MCP server origin's authorization server metadata (MCP 2025-03-26)", zap.String("issuer", origin))
		return r.fromMetadata(origin, as, true)
	case !errors.Is(err, discovery.ErrNotFound):
		return nil, discoveryFailure(err)
	}
	r.logger.Debug("no metadata at all; using the MCP 2025-03-26 default endpoints", zap.String("origin", origin))
	// 2025-03-26 requires PKCE of its servers, so S256 is assumed.
	return &endpoints{Issuer: origin, TokenEndpoint: origin + "/token", AuthorizationEndpoint: origin + "/authorize",
		RegistrationEndpoint: origin + "/register", PKCE: true, discovered: true}, nil
}

// pinnedEndpoints reads the metadata of the issuer a credential is pinned
// to, bypassing the resource's (changed) protected resource metadata.
func (r *resolver) pinnedEndpoints(ctx context.Context, pinned string) (*endpoints, error) {
	as, err := r.client.AuthServer(ctx, pinned)
	if err != nil {
		return nil, discoveryFailure(err)
	}
	return r.fromMetadata(pinned, as, false)
}

// fromMetadata turns validated authorization server metadata into
// endpoints. Without insecure_allow_http the discovery client has already
// refused http token, authorization and registration endpoints; a
// revocation endpoint that is not https is left out.
func (r *resolver) fromMetadata(issuer string, as *discovery.AuthServerMetadata, discovered bool) (*endpoints, error) {
	revocation := as.RevocationEndpoint
	if !r.client.AllowHTTP && !strings.HasPrefix(revocation, "https://") {
		revocation = ""
	}
	ep := &endpoints{Issuer: issuer, TokenEndpoint: as.TokenEndpoint, RevocationEndpoint: revocation,
		AuthMethods: as.AuthMethods(), ScopesSupported: as.ScopesSupported, discovered: discovered}
	return ep.withFlow(as), nil
}

// advertisedRevocation reads the revocation endpoint from the configured
// issuer's metadata, for a configuration that names token_endpoint and
// issuer but no revocation_endpoint.
func (r *resolver) advertisedRevocation(ctx context.Context) (string, error) {
	if r.issuer == "" || r.client == nil {
		return "", nil
	}
	as, err := r.client.AuthServer(ctx, r.issuer)
	if err != nil {
		return "", err
	}
	if as.RevocationEndpoint != "" && !r.client.AllowHTTP && !strings.HasPrefix(as.RevocationEndpoint, "https://") {
		return "", fmt.Errorf("authorization server %s advertises a non-https revocation endpoint", r.issuer)
	}
	return as.RevocationEndpoint, nil
}

// resolveTTL bounds how long resolved endpoints are reused before the
// (separately cached) metadata is consulted again.
const resolveTTL = time.Hour

// discoverTimeout bounds one discovery (several metadata fetches, each
// bounded by the discovery client's timeout).
const discoverTimeout = 30 * time.Second

func (r *resolver) resolve(ctx context.Context) (*endpoints, error) {
	if r.static != nil {
		return r.static, nil
	}
	r.mu.Lock()
	if r.cached != nil && !r.stale && time.Now().Before(r.expiry) {
		ep := r.cached
		r.mu.Unlock()
		return ep, nil
	}
	r.mu.Unlock()
	// The shared discovery runs detached from the caller that started it,
	// with its own bound: one caller's cancellation must not fail the
	// others sharing it. Each caller stops waiting when its own context
	// ends.
	timeout := r.timeout
	if timeout <= 0 {
		timeout = discoverTimeout
	}
	detached := context.WithoutCancel(ctx)
	ch := r.flight.DoChan("resolve", func() (any, error) {
		ctx, cancel := context.WithTimeout(detached, timeout)
		defer cancel()
		ep, err := r.discover(ctx)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.cached, r.expiry, r.stale = ep, time.Now().Add(resolveTTL), false
		r.mu.Unlock()
		return ep, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*endpoints), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("discovering the authorization server: %w", context.Cause(ctx))
	}
}

func (r *resolver) discover(ctx context.Context) (*endpoints, error) {
	issuer := r.issuer
	var resourceScopes []string
	var prmResource string
	discovered := issuer == ""
	if issuer == "" {
		r.mu.Lock()
		urls := slices.Clone(r.challengeURLs)
		r.mu.Unlock()
		prm, from, err := r.client.ProtectedResource(ctx, r.resource, urls)
		if err != nil && r.legacyMCP && errors.Is(err, discovery.ErrNotFound) {
			return r.legacyEndpoints(ctx)
		}
		if err != nil {
			return nil, discoveryFailure(err)
		}
		if len(prm.AuthorizationServers) == 0 {
			return nil, &untrustedError{kind: untrustedMetadata, msg: fmt.Sprintf("protected resource metadata at %s names no authorization server", from)}
		}
		issuer = prm.AuthorizationServers[0]
		resourceScopes, prmResource = prm.ScopesSupported, prm.Resource
		r.logger.Debug("discovered protected resource metadata", zap.String("url", from), zap.String("authorization_server", issuer))
	}
	as, err := r.client.AuthServer(ctx, issuer)
	if err != nil {
		return nil, discoveryFailure(err)
	}
	ep, err := r.fromMetadata(issuer, as, discovered)
	if err != nil {
		return nil, err
	}
	if len(resourceScopes) > 0 {
		ep.ScopesSupported = resourceScopes // the resource's, over the server's
	}
	ep.ResourceScopes, ep.Resource = resourceScopes, prmResource
	r.logger.Debug("discovered authorization server metadata", zap.String("issuer", issuer), zap.String("token_endpoint", as.TokenEndpoint))
	return ep, nil
}

// untrustedError is a discovery result the gateway refuses to act on: a
// mismatched document, a blocked destination, a changed authorization
// server. Retrying will not help until the configuration changes. msg may
// carry URLs and strings from remote documents: it is logged, never shown
// to clients, who get the description of kind.
type untrustedError struct {
	kind untrustedKind
	msg  string
	err  error
	// pinned and advertised name both servers of an untrustedPin.
	pinned, advertised string
}

// untrustedKind says, in a stable sentence for clients, why discovery
// was not trusted.
type untrustedKind int

const (
	untrustedMetadata untrustedKind = iota // mismatched or unusable metadata
	untrustedBlocked                       // a destination the SSRF guard refused
	untrustedPin                           // another issuer than the pinned one
	untrustedIssuer                        // a discovered issuer not trusted with a secret
)

func (k untrustedKind) String() string {
	switch k {
	case untrustedBlocked:
		return "discovery led to an address the gateway does not contact"
	case untrustedPin:
		return "the upstream names another authorization server than the one this credential is bound to; an operator must change the configuration or unpin it"
	case untrustedIssuer:
		return "the discovered authorization server is not trusted with this credential's secret; an operator must name it with `trusted_issuers` or `issuer`"
	}
	return "the authorization server metadata could not be validated"
}

func (e *untrustedError) Error() string   { return e.msg }
func (e *untrustedError) Unwrap() error   { return e.err }
func (e *untrustedError) Permanent() bool { return false }
func (e *untrustedError) Transient() bool { return false }

// discoveryFailure classifies a discovery error: validation failures and
// blocked destinations are untrusted; "nothing found" waits for new
// information (a challenge) rather than being retried at once; anything
// else (network) is transient.
func discoveryFailure(err error) error {
	if errors.Is(err, discovery.ErrBlockedDestination) {
		return &untrustedError{kind: untrustedBlocked, msg: err.Error(), err: err}
	}
	var ve *discovery.ValidationError
	if errors.As(err, &ve) {
		return &untrustedError{kind: untrustedMetadata, msg: err.Error(), err: err}
	}
	if errors.Is(err, discovery.ErrNotFound) {
		return &notFoundError{err: err}
	}
	return fmt.Errorf("discovering the authorization server: %w", err)
}

// notFoundError: no metadata at any candidate URL. Retrying the same URLs
// at once cannot help; an upstream challenge may name new ones.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string {
	return "discovering the authorization server: " + e.err.Error()
}
func (e *notFoundError) Unwrap() error   { return e.err }
func (e *notFoundError) Permanent() bool { return false }
func (e *notFoundError) Transient() bool { return false }

// newResolver builds the endpoint resolver: static when token_endpoint is
// configured, discovery otherwise. Discovery may reach private addresses
// only at the resource's and the configured issuer's own host and port,
// and at discovery_allow_hosts.
func (g *Gateway) newResolver() *resolver {
	x := &g.Config
	r := &resolver{resource: x.Resource, issuer: x.Issuer, revocation: x.RevocationEndpoint, logger: g.logger,
		legacyMCP: g.Grant == tokenstore.GrantAuthorizationCode}
	allowHosts := make([]string, 0, len(x.DiscoveryAllowHosts)+2)
	for _, host := range x.DiscoveryAllowHosts {
		allowHosts = append(allowHosts, strings.ToLower(host))
	}
	for _, raw := range []string{x.Resource, x.Issuer} {
		if hp, err := discovery.HostPortOf(raw); err == nil && raw != "" {
			allowHosts = append(allowHosts, hp)
		}
	}
	r.client = discovery.NewClient(discovery.Options{
		AllowHTTP:  g.InsecureAllowHTTP,
		AllowHosts: allowHosts,
		OnFetch:    func(outcome string) { gatewayMetrics.discoveryFetches.WithLabelValues(outcome).Inc() },
	})
	if x.TokenEndpoint != "" {
		r.static = &endpoints{Issuer: x.Issuer, TokenEndpoint: x.TokenEndpoint, RevocationEndpoint: x.RevocationEndpoint}
	}
	return r
}
