package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// The trust policy: which authorization server may receive this
// credential's secrets (a client secret, a refresh token, a code, an
// assertion), and which authorization response may complete a flow.
// Every flow that talks to an authorization server asks it here.
//
//   - A credential bound to an issuer (configured, or pinned by its first
//     token) talks only to that issuer; the binding is read from the store
//     (tokenstore.Credential.BoundIssuer), never from memory.
//   - A discovered issuer must be on the resource's registrable domain or
//     named by `issuer` / `trusted_issuers` before it receives a secret.
//   - Discovery itself reaches private addresses only as allowed
//     (discovery's SSRF guard, `discovery_allow_hosts`), and http only with
//     `insecure_allow_http`.
//   - An authorization response completes only the flow it belongs to
//     (authFlow.owns), from the issuer the flow went to: its `iss` must
//     equal that issuer exactly when present, and is required when the
//     server advertises authorization_response_iss_parameter_supported
//     (RFC 9207; oauthclient.CheckIssuer); and only a credential bound to
//     that issuer, or to none, takes its tokens.

// trustPolicy is a credential's trust rules.
type trustPolicy struct {
	issuerTrust
	logger       *zap.Logger
	credentialID string
	resource     string
}

// allow decides whether ep's server may receive this credential's
// secrets, given the issuer it is bound to (pinned, "" for none yet).
func (t trustPolicy) allow(pinned string, ep *endpoints) error {
	if pinned != "" && ep.Issuer != "" && !discovery.IssuerMatches(pinned, ep.Issuer) {
		t.logger.Warn("upstream points at a different authorization server; not sending credentials there",
			zap.String("credential", t.credentialID), zap.String("pinned_issuer", pinned),
			zap.String("advertised_issuer", ep.Issuer), zap.String("resource", t.resource))
		return &untrustedError{kind: untrustedPin, pinned: pinned, advertised: ep.Issuer, msg: fmt.Sprintf("the upstream now names authorization server %s, but this credential is bound to %s; "+
			"the gateway will not send its credentials there until the configuration changes or an operator unpins it", ep.Issuer, pinned)}
	}
	if ep.discovered {
		if err := t.check(ep.Issuer); err != nil {
			t.logger.Warn("discovered authorization server is not trusted with this credential's secret",
				zap.String("credential", t.credentialID), zap.String("issuer", ep.Issuer),
				zap.String("resource", t.resource), zap.String("fix", "add the issuer to trusted_issuers, or set issuer"))
			return err
		}
	}
	return nil
}

// authorizationResponse decides whether an authorization response may
// complete pending: RFC 9207's iss rule.
func (t trustPolicy) authorizationResponse(resp oauthclient.AuthorizationResponse, pending *tokenstore.PendingAuthorization) error {
	return oauthclient.CheckIssuer(resp, pending.Issuer, pending.IssRequired)
}

// completion decides whether a flow to pending.Issuer may complete a
// credential bound to bound ("" for none).
func (t trustPolicy) completion(bound string, pending *tokenstore.PendingAuthorization) error {
	if bound != "" && bound != pending.Issuer {
		return fmt.Errorf("%w: bound to %s, the flow went to %s", tokenstore.ErrIssuerBound, bound, pending.Issuer)
	}
	return nil
}

// migrateIfServerChanged applies SEP-2352 (MCP 2026-07-28) to a token
// acquisition that failed because the resource now names another
// authorization server than the credential is bound to. Credentials
// whose client the gateway obtained itself (dynamic registration or a
// client metadata document) and whose tokens came from a user's consent
// are never reused with the new server: the refresh token is revoked at
// the old one where it can be, the credential lets go of it and goes back
// to consent, which registers anew at the new server. Operator-configured
// clients stay bound (fail closed: `unpin` or a configuration change).
// It reports whether the caller should answer "authorization required".
func (g *Gateway) migrateIfServerChanged(ctx context.Context, src tokenSource, err error) bool {
	var ue *untrustedError
	if g.flow == nil || g.flow.req.registration == nil || g.flow.req.registration.configured ||
		!errors.As(err, &ue) || ue.kind != untrustedPin {
		return false
	}
	cred, ok := src.(*tokenstore.Credential)
	if !ok {
		return false
	}
	why := fmt.Sprintf("the resource's authorization server changed from %s to %s; consent again (the gateway registers anew there)", ue.pinned, ue.advertised)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	migrated, revokeErr := cred.Migrate(ctx, ue.pinned, why)
	if !migrated {
		return revokeErr == nil && cred.Status().Issuer == ""
	}
	gatewayMetrics.migrations.Inc()
	fields := []zap.Field{zap.String("credential", cred.ID()), zap.String("old_issuer", ue.pinned), zap.String("new_issuer", ue.advertised)}
	if revokeErr != nil {
		fields = append(fields, zap.NamedError("revocation_error", revokeErr))
	}
	g.logger.Warn("authorization server changed: the credential lets go of the old one and goes back to consent (SEP-2352)", fields...)
	return true
}

// issuerTrust decides whether a discovered authorization server may
// receive this credential's shared secret (a client secret or a refresh
// token). Discovery is trust on first use: whoever answers for the
// resource's metadata names the issuer. A secret therefore goes only to an
// issuer that shares the resource's registrable domain (per the public
// suffix list: mcp.example.com and auth.example.com do, example.com and
// attacker.net do not; IP literals and single-label hosts must be the
// same host), or that the configuration names (`issuer`, `trusted_issuers`).
// Credentials without a reusable secret discover freely.
type issuerTrust struct {
	resourceHost  string
	trusted       []string
	carriesSecret bool
}

func newIssuerTrust(resource string, trusted []string, carriesSecret bool) issuerTrust {
	host := ""
	if u, err := url.Parse(resource); err == nil {
		host = strings.ToLower(u.Hostname())
	}
	return issuerTrust{resourceHost: host, trusted: trusted, carriesSecret: carriesSecret}
}

func (t issuerTrust) check(issuer string) error {
	if !t.carriesSecret {
		return nil
	}
	for _, ti := range t.trusted {
		if discovery.IssuerMatches(ti, issuer) {
			return nil
		}
	}
	u, err := url.Parse(issuer)
	if err == nil && sameRegistrableDomain(t.resourceHost, strings.ToLower(u.Hostname())) {
		return nil
	}
	return &untrustedError{kind: untrustedIssuer, msg: fmt.Sprintf("discovered authorization server %s is on another domain than the resource; "+
		"the gateway sends a client secret or refresh token only to an issuer on the resource's domain or named by `issuer` or `trusted_issuers`", issuer)}
}

// sameRegistrableDomain reports whether a and b share a registrable domain
// (eTLD+1). Hosts without one (IP literals, localhost, single labels) must
// be equal.
func sameRegistrableDomain(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	if net.ParseIP(strings.Trim(a, "[]")) != nil || net.ParseIP(strings.Trim(b, "[]")) != nil {
		return false // the public suffix rules would pair 10.0.0.1 with 127.0.0.1
	}
	da, errA := publicsuffix.EffectiveTLDPlusOne(a)
	db, errB := publicsuffix.EffectiveTLDPlusOne(b)
	return errA == nil && errB == nil && da == db
}
