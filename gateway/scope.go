package gateway

import (
	"context"
	"slices"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// scopePolicy decides every scope the gateway asks for, for every flow:
// a grant that starts from nothing, a user's consent, a refresh, a
// step-up. Flows ask it; none chooses scopes of its own.
//
// The rules:
//   - configured scopes (`scope`) are asked for with every token;
//   - without them, a grant that starts from nothing follows the MCP
//     scope selection: the upstream challenge's `scope`, else the
//     resource's (else the server's) scopes_supported, else none;
//   - `max_scope`, when set, bounds every scope the gateway asks for on
//     its own initiative: the challenge's and scopes_supported included;
//   - offline_access is asked for only when the authorization server
//     itself lists it (SEP-2207), never because the resource does;
//   - a refresh sends no `scope` unless one is configured or it steps up
//     (RFC 6749 §6: the server keeps what it granted; a strict one
//     refuses anything else);
//   - step-up may ask only for scopes inside the bound: `max_scope`, else
//     the configured scopes and the resource's scopes_supported; for a
//     credential a user consents to, `max_scope`, else the user's consent
//     (SEP-2350: the union of the held and the challenged scopes is asked).
type scopePolicy struct {
	configured []string // Config.Scopes
	max        []string // Config.MaxScope
	resolver   *resolver
	// consentBound: the credential's scopes come from a user's (or an
	// operator's) consent, which bounds step-up when max_scope does not.
	consentBound bool
}

const offlineAccess = "offline_access"

// initial is what a grant that starts from nothing asks for
// (client_credentials, jwt_bearer, the first token after discovery).
func (p scopePolicy) initial(ep *endpoints) []string {
	if len(p.configured) > 0 {
		return p.configured
	}
	discovered := p.resolver.scopesFromChallenge()
	if len(discovered) == 0 {
		discovered = ep.ScopesSupported
	}
	return p.clip(withoutUnlisted(discovered, offlineAccess, ep.AuthServerScopes))
}

// consent is what a user's authorization asks for: initial, the scopes
// a step-up needs (extra, already checked against the bound), and
// offline_access when the server offers it, so a refresh token is issued.
func (p scopePolicy) consent(ep *endpoints, extra []string) []string {
	scopes := tokenstore.UnionScopes(p.initial(ep), extra)
	if slices.Contains(ep.AuthServerScopes, offlineAccess) && !slices.Contains(scopes, offlineAccess) {
		scopes = append(slices.Clone(scopes), offlineAccess)
	}
	return scopes
}

// tokenRequest is the scope a token request sends. requested is what the
// credential asks for (its configured or consented scopes, united with a
// step-up's); a refresh sends it only when scopes are configured or it
// steps up.
func (p scopePolicy) tokenRequest(tr tokenstore.TokenRequest, ep *endpoints) []string {
	if tr.Grant == tokenstore.GrantRefreshToken {
		if tr.StepUp || len(p.configured) > 0 {
			return tr.Scopes
		}
		return nil
	}
	if len(tr.Scopes) > 0 {
		return tr.Scopes
	}
	return p.initial(ep)
}

// stepUpBound is the scope set step-up may ask for; nil without a
// bound (a consent-based credential without max_scope: the user's consent
// is the bound).
func (p scopePolicy) stepUpBound(ctx context.Context) []string {
	if len(p.max) > 0 {
		return p.max
	}
	if p.consentBound {
		return nil
	}
	return tokenstore.UnionScopes(p.configured, p.resolver.resourceScopes(ctx))
}

// outsideBound returns the scopes in want that step-up may not ask for.
func (p scopePolicy) outsideBound(ctx context.Context, want []string) []string {
	if p.consentBound && len(p.max) == 0 {
		return nil
	}
	bound := p.stepUpBound(ctx)
	var outside []string
	for _, s := range want {
		if !slices.Contains(bound, s) {
			outside = append(outside, s)
		}
	}
	return outside
}

// clip keeps only scopes inside max_scope (all without one).
func (p scopePolicy) clip(scopes []string) []string {
	if len(p.max) == 0 {
		return scopes
	}
	var kept []string
	for _, s := range scopes {
		if slices.Contains(p.max, s) {
			kept = append(kept, s)
		}
	}
	return kept
}

// withoutUnlisted drops scope from scopes unless listed names it.
func withoutUnlisted(scopes []string, scope string, listed []string) []string {
	if !slices.Contains(scopes, scope) || slices.Contains(listed, scope) {
		return scopes
	}
	return slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return s == scope })
}
