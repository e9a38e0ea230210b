package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// authFlow is the authorization-code machinery of one handler (grant
// authorization_code): the paths it answers itself (callback, start,
// disconnect, client metadata document), the per-user credentials, and
// the flow's start and completion. OAuth mechanics (PKCE, the
// authorization URL, RFC 9207, registration) live in oauthclient; pending
// state and registrations in tokenstore.
type authFlow struct {
	g         *Gateway
	req       *requester
	manager   *tokenstore.Manager
	spec      tokenstore.Spec // Principal empty
	principal string          // the principal expression; "" for a shared credential
	// principalOf evaluates the principal for a request (the adapter's
	// placeholder evaluation); nil for a shared credential.
	principalOf func(*http.Request) string
	logger      *zap.Logger

	redirectURI, origin                              string
	callbackPath, startPath, disconnectPath, cimdURL string
	cimdPath                                         string
	params                                           url.Values
	stateTTL                                         time.Duration

	users *tokenstore.Principals // each principal's credential
}

const defaultStateTTL = 10 * time.Minute

func newAuthFlow(g *Gateway, req *requester, m *tokenstore.Manager, spec tokenstore.Spec, principalOf func(*http.Request) string) (*authFlow, error) {
	x := &g.Config
	u, err := url.Parse(x.RedirectURI)
	if err != nil {
		return nil, fmt.Errorf("redirect_uri: %v", err)
	}
	dir := path.Dir(u.Path)
	f := &authFlow{
		g: g, req: req, manager: m, spec: spec, principal: g.Principal, principalOf: principalOf, logger: g.logger,
		redirectURI:    x.RedirectURI,
		origin:         u.Scheme + "://" + u.Host,
		callbackPath:   u.Path,
		startPath:      path.Join(dir, "start"),
		disconnectPath: path.Join(dir, "disconnect"),
		cimdURL:        x.ClientMetadataURL,
		params:         url.Values{},
		stateTTL:       g.AuthorizationStateTTL,
		users:          m.Principals(spec, req),
	}
	if f.stateTTL <= 0 {
		f.stateTTL = defaultStateTTL
	}
	if f.cimdURL != "" {
		cu, err := url.Parse(f.cimdURL)
		if err != nil {
			return nil, fmt.Errorf("client_metadata_url: %v", err)
		}
		f.cimdPath = cu.Path
	}
	for k, v := range g.AuthorizationParams {
		f.params.Set(k, v)
	}
	return f, nil
}

// sharedFlows maps the id of a shared authorization-code credential to its
// flow, so the admin API can start an operator's authorization.
var sharedFlows sync.Map

// ErrNoOperatorFlow is returned by StartOperatorAuthorization for a
// credential that is not a shared authorization-code credential.
var ErrNoOperatorFlow = errors.New("not a shared authorization-code credential: only those are authorized by an operator")

// StartOperatorAuthorization begins an operator's authorization of the
// shared authorization-code credential id and returns the URL to open.
func StartOperatorAuthorization(ctx context.Context, id string) (string, error) {
	v, ok := sharedFlows.Load(id)
	if !ok {
		return "", ErrNoOperatorFlow
	}
	f := v.(*authFlow)
	authURL, err := f.begin(ctx, "", true, "")
	if err != nil {
		f.logger.Error("could not start the operator's authorization", zap.String("credential", id), zap.Error(err))
		return "", errors.New(publicFlowError(err))
	}
	return authURL, nil
}

// perUser reports whether each user has a credential of their own.
func (f *authFlow) perUser() bool { return f.principal != "" }

// credential returns the credential of principal ("" for the shared one).
func (f *authFlow) credential(principal string) *tokenstore.Credential {
	if principal == "" {
		return f.g.cred
	}
	return f.users.Credential(principal)
}

// release gives back every per-user credential (config unload).
func (f *authFlow) release() {
	if f.g.cred != nil {
		sharedFlows.CompareAndDelete(f.g.cred.ID(), f)
	}
	f.users.Release()
}

// route answers the flow's own paths; handled is false for any other
// request. None of them is ever forwarded upstream.
func (f *authFlow) route(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	switch r.URL.Path {
	case f.callbackPath:
		return true, f.callback(w, r)
	case f.startPath:
		return true, f.start(w, r)
	case f.disconnectPath:
		return true, f.disconnect(w, r)
	case f.cimdPath:
		if f.cimdPath != "" {
			return true, f.serveClientMetadata(w, r)
		}
	}
	return false, nil
}

// startURL is where a user begins the flow, on the gateway; scopes asks
// for more than the configured ones (an upstream's insufficient_scope).
func (f *authFlow) startURL(returnTo string, scopes ...string) string {
	q := url.Values{}
	if returnTo != "" {
		q.Set("return_to", returnTo)
	}
	if len(scopes) > 0 {
		q.Set("scope", strings.Join(scopes, " "))
	}
	if len(q) == 0 {
		return f.origin + f.startPath
	}
	return f.origin + f.startPath + "?" + q.Encode()
}

// start (GET) begins a flow for the requesting user and redirects the
// browser to the authorization server.
func (f *authFlow) start(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return page(w, http.StatusMethodNotAllowed, "Method not allowed", "Open this address in a browser.")
	}
	if !f.perUser() {
		return page(w, http.StatusForbidden, "An operator must connect this account",
			fmt.Sprintf("This gateway holds one shared credential for %s. An operator connects it with: caddy oauth-gateway authorize %s",
				f.spec.Resource, f.g.cred.ID()))
	}
	principal := f.principalOf(r)
	if principal == "" {
		return page(w, http.StatusUnauthorized, "Sign in first", "The gateway could not tell who you are, so it cannot connect an account for you.")
	}
	extra := strings.Fields(r.URL.Query().Get("scope"))
	if outside := f.g.scopes.outsideBound(r.Context(), extra); len(outside) > 0 || len(extra) > tokenstore.MaxScopes {
		return page(w, http.StatusBadRequest, "Scope not allowed",
			"The application asked for a scope this gateway may not request; an operator can allow it with max_scope.")
	}
	authURL, err := f.begin(r.Context(), principal, false, safeReturnTo(r.URL.Query().Get("return_to")), extra...)
	var fe *flowError
	if errors.As(err, &fe) && fe.busy {
		f.logger.Warn("authorization refused: the handler's bound on outstanding authorizations is reached",
			zap.String("resource", f.spec.Resource), zap.String("fix", "raise max_pending_authorizations if this is legitimate load"))
		w.Header().Set("Retry-After", "60")
		return page(w, http.StatusServiceUnavailable, "Try again in a few minutes", fe.public)
	}
	if err != nil {
		f.logger.Error("could not start the authorization", zap.String("resource", f.spec.Resource), zap.Error(err))
		return page(w, http.StatusBadGateway, "Cannot start the authorization", publicFlowError(err))
	}
	http.Redirect(w, r, authURL, http.StatusFound)
	return nil
}

// begin creates the pending state and returns the authorization URL.
func (f *authFlow) begin(ctx context.Context, principal string, operator bool, returnTo string, extraScopes ...string) (string, error) {
	cred := f.credential(principal)
	// The binding comes from the store, never from memory: after a
	// restart, an eviction or on another instance memory knows no issuer,
	// and a flow started from that would take this user's consent (and
	// the client's secret) to whatever server the metadata names now.
	pinned, err := cred.BoundIssuer(ctx)
	if err != nil {
		return "", fmt.Errorf("reading the credential's authorization server binding: %w", err)
	}
	if pinned == "" {
		// MCP: learn what the upstream's 401 says before the first
		// consent (resource_metadata, scope).
		f.req.resolver.probeChallenge(ctx)
	}
	ep, err := f.req.endpointsFor(ctx, pinned)
	if err != nil && f.g.migrateIfServerChanged(ctx, cred, err) {
		ep, err = f.req.endpointsFor(ctx, "") // bound to nothing now
	}
	if err != nil {
		return "", err
	}
	if ep.AuthorizationEndpoint == "" {
		return "", fmt.Errorf("authorization server %s advertises no authorization_endpoint", ep.Issuer)
	}
	if !ep.PKCE {
		return "", &flowError{public: "the authorization server does not support PKCE with S256 (code_challenge_methods_supported), which the gateway requires",
			err: fmt.Errorf("authorization server %s does not list S256 in code_challenge_methods_supported", ep.Issuer)}
	}
	client, err := f.req.clientFor(ctx, ep)
	if err != nil {
		return "", err
	}
	verifier, challenge, err := oauthclient.NewPKCE()
	if err != nil {
		return "", err
	}
	state, err := oauthclient.NewState()
	if err != nil {
		return "", err
	}
	scopes := f.g.scopes.consent(ep, extraScopes)
	pending := &tokenstore.PendingAuthorization{
		CredentialID: cred.ID(), Principal: principal, Operator: operator,
		CodeVerifier: verifier, Issuer: ep.Issuer, IssRequired: ep.IssRequired,
		ClientID: client.ClientID, RedirectURI: f.redirectURI, Scopes: scopes,
		ReturnTo: returnTo, ExpiresAt: time.Now().Add(f.stateTTL),
	}
	limits := tokenstore.PendingLimits{Handler: f.spec.ID(), PerHandler: f.g.MaxPendingAuthorizations}
	if err := f.manager.SavePendingBounded(ctx, state, pending, limits); errors.Is(err, tokenstore.ErrTooManyPending) {
		return "", &flowError{public: "Too many authorizations are in progress at this gateway right now; try again in a few minutes.", err: err, busy: true}
	} else if err != nil {
		return "", fmt.Errorf("storing the authorization state: %w", err)
	}
	ar := oauthclient.AuthorizationRequest{
		Endpoint: ep.AuthorizationEndpoint, ClientID: client.ClientID, RedirectURI: f.redirectURI,
		State: state, CodeChallenge: challenge, Scopes: scopes, Extra: f.params,
	}
	if f.req.sendResource {
		ar.Resource = f.req.resourceFor(ep)
	}
	return ar.URL()
}

// safeReturnTo keeps only a same-origin path (no scheme, no host, no
// "//" or "\" tricks): no open redirect.
func safeReturnTo(raw string) string {
	if raw == "" || !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") || strings.ContainsAny(raw, "\\\r\n") {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return ""
	}
	return raw
}

// flowError carries a sentence safe to show the user next to the error
// for the log.
type flowError struct {
	public string
	err    error
	// busy: a bound was reached; the start may be tried again later.
	busy bool
}

func (e *flowError) Error() string { return e.err.Error() }
func (e *flowError) Unwrap() error { return e.err }

// publicFlowError is what a user is told about a failed flow.
func publicFlowError(err error) string {
	var fe *flowError
	if errors.As(err, &fe) {
		return fe.public
	}
	var ue *untrustedError
	if errors.As(err, &ue) {
		return ue.kind.String()
	}
	return "The gateway could not reach or validate the authorization server; the gateway's log has the details."
}
