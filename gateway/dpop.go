package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/oauthgw/caddy-oauth-gateway/oauthclient"
	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// DPoP (RFC 9449) in the handler: tokens the authorization server bound
// to a credential's key are sent as `Authorization: DPoP <token>` with a
// fresh proof on every upstream request (replays included); keys, proofs
// and nonces are oauthclient's (proofs built at the cost of their
// signature, ES256 unless the key is Ed25519).

// DecodeDPoPKey is tokenstore's Options.DecodeKey: a stored key, parsed
// once per token rather than per request.
func DecodeDPoPKey(b []byte) (any, error) { return oauthclient.ParseDPoPKey(b) }

// dpopHeader is the canonical form of the DPoP request header.
const dpopHeader = "Dpop"

// upstreamDPoP proves possession of tokens' keys to the resource server.
type upstreamDPoP struct {
	// origin is the resource's origin: a proof's htu is it plus the
	// request path, as the upstream sees the request the gateway sends.
	origin string
	// nonceKey is where the upstream's nonce is remembered (OriginOf).
	nonceKey string
	nonces   *oauthclient.DPoPNonces
}

func newUpstreamDPoP(resource string) *upstreamDPoP {
	u := &upstreamDPoP{nonceKey: oauthclient.OriginOf(resource), nonces: &oauthclient.DPoPNonces{}}
	if ru, err := url.Parse(resource); err == nil {
		u.origin = ru.Scheme + "://" + ru.Host
	}
	return u
}

// setHeaders puts tok on r: a Bearer token alone, or a DPoP-bound token
// with a new proof. A DPoP header the client sent is never forwarded.
func (u *upstreamDPoP) setHeaders(r *http.Request, tok *tokenstore.Token) error {
	key, bound := tok.Key.(*oauthclient.DPoPKey)
	if !bound {
		delete(r.Header, dpopHeader)
		return nil
	}
	proof, err := key.Proof(r.Method, u.origin+r.URL.EscapedPath(), tok.AccessToken, u.nonces.Get(u.nonceKey))
	if err != nil {
		return err
	}
	r.Header[dpopHeader] = []string{proof}
	return nil
}

// learnNonce adopts a nonce the upstream sent (RFC 9449 §9), and reports
// whether its answer asks for a retry with it (401 use_dpop_nonce).
func (u *upstreamDPoP) learnNonce(status int, header http.Header) (retry bool) {
	if n, ok := oauthclient.UseDPoPNonce(status, header, nil); ok {
		u.nonces.Set(u.nonceKey, n)
		return true
	}
	if n := header.Get("DPoP-Nonce"); n != "" {
		u.nonces.Set(u.nonceKey, n)
	}
	return false
}

// dpopKeyFor returns the key a token request is made with: the
// credential's stored one, else a new one (returned encoded, to be stored
// with the credential).
func (r *requester) dpopKeyFor(stored string) (*oauthclient.DPoPKey, string, error) {
	if stored != "" {
		key, err := oauthclient.ParseDPoPKey([]byte(stored))
		return key, stored, err
	}
	key, err := oauthclient.NewDPoPKey()
	if err != nil {
		return nil, "", err
	}
	enc, err := key.MarshalPrivate()
	return key, string(enc), err
}

// noteUnbound logs a server that answered a DPoP token request with a
// Bearer token: it is presented as Bearer (RFC 9449 §5 leaves the choice
// to the server), and an operator should know the binding is absent.
func (r *requester) noteUnbound(tokenType string) {
	if tokenType != "" && !strings.EqualFold(tokenType, "DPoP") {
		r.logger.Warn("dpop is configured but the authorization server issued a token that is not DPoP-bound; presenting it as a Bearer token",
			zap.String("credential", r.credentialID), zap.String("token_type", tokenType))
	}
}
