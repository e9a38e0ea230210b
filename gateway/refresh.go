package gateway

// The refresh policy: when the gateway asks for a new token, and when it
// passes a failure on instead. Every flow asks it here; the mechanics
// (single flight, the fleet-wide lease, backoff, the proactive schedule
// ahead of expiry) are tokenstore's.
//
//   - Ahead of expiry, in the background, for a credential requests use
//     (tokenstore's scheduler); a request never waits for that.
//   - After an upstream 401 (or a configured vendor equivalent): one
//     refresh and one replay per request, when the body could be held
//     (else the 401 is passed on and the refresh runs in the background).
//   - A token obtained after a 401 and rejected again within the throttle
//     window, which no upstream ever accepted, is not refreshed again: the
//     401 is passed on (tokenstore.ErrRejectedAgain). A token that served
//     requests and is then rejected was revoked: it is refreshed at once.
//   - An authorization-code credential without a usable refresh token
//     goes back to the user's consent instead of failing.
//   - With nothing configured and nothing found at the well-known URLs,
//     the request goes without a token to learn from the upstream's 401
//     challenge where tokens come from.

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/discovery"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// canLearnFromChallenge reports whether a failed token acquisition may be
// fixed by the upstream's challenge: discovery from the resource found
// nothing, and no endpoint or issuer is configured.
func (g *Gateway) canLearnFromChallenge(err error) bool {
	return g.TokenEndpoint == "" && g.Issuer == "" && errors.Is(err, discovery.ErrNotFound)
}

// invalidate refreshes after an upstream 401, waiting at most wait.
func (g *Gateway) invalidate(r *http.Request, cred tokenSource, failed string, wait time.Duration) (*tokenstore.Token, error) {
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	return cred.Invalidate(ctx, failed)
}

// needsAuthorization: an authorization-code credential without a usable
// refresh token (never authorized, rejected for good, revoked) goes back
// to the user's consent rather than failing.
func (g *Gateway) needsAuthorization(err error) bool {
	if g.flow == nil {
		return false
	}
	return errors.Is(err, tokenstore.ErrNeedsAuthorization) || errors.Is(err, tokenstore.ErrDead)
}

// invalidateInBackground refreshes after a 401 that cannot be replayed,
// so the client's retry finds a new token.
func (g *Gateway) invalidateInBackground(cred tokenSource, failed string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), refreshWait)
		defer cancel()
		if _, err := cred.Invalidate(ctx, failed); err != nil {
			g.logger.Debug("refresh after an unreplayable 401 failed", zap.String("credential", cred.ID()), zap.Error(err))
		}
	}()
}
