package oauthclient

// DPoP (RFC 9449): sender-constrained tokens. A DPoPKey signs one proof
// JWT per HTTP request; DPoPNonces remembers the server-provided nonces
// proofs must carry. Every JWS and JWK operation is go-jose's.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
)

// dpopType is the typ header of a DPoP proof (RFC 9449 §4.2).
const dpopType = "dpop+jwt"

// DPoPKey is one credential's DPoP key: an ECDSA P-256 private key that
// signs proofs with ES256. It is safe for concurrent use; its methods
// never put key material in errors, and printing it (%v, %#v) shows only
// the thumbprint.
type DPoPKey struct {
	priv *ecdsa.PrivateKey
	// signer is built once: it holds the algorithm, the typ header and
	// the public JWK to embed, and go-jose's Sign only reads it, so one
	// signer serves concurrent proofs without per-call setup.
	signer jose.Signer
	jkt    string
}

// NewDPoPKey generates a fresh ECDSA P-256 key (alg ES256).
func NewDPoPKey() (*DPoPKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: DPoP key: %w", err)
	}
	return newDPoPKey(priv)
}

func newDPoPKey(priv *ecdsa.PrivateKey) (*DPoPKey, error) {
	// The public JWK is encoded by go-jose once, here, and handed to the
	// signer as a ready header value: with EmbedJWK the signer would
	// re-encode it twice per proof, a third of the cost of a proof
	// besides the signature itself. The bytes are the same.
	pub := jose.JSONWebKey{Key: &priv.PublicKey}
	if !pub.Valid() {
		return nil, errors.New("oauthclient: DPoP key: invalid public key")
	}
	jwk, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("oauthclient: DPoP key: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType(dpopType).WithHeader(jose.HeaderKey("jwk"), json.RawMessage(jwk))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: DPoP key: %w", err)
	}
	jkt, err := thumbprint(priv)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: DPoP key: %w", err)
	}
	return &DPoPKey{priv: priv, signer: signer, jkt: jkt}, nil
}

// ParseDPoPKey reads a private JWK as MarshalPrivate writes it. It refuses
// public-only, symmetric and non-P-256 keys, and a JWK whose alg or use
// does not suit DPoP, naming the fault but never the key material.
func ParseDPoPKey(data []byte) (*DPoPKey, error) {
	fail := func(msg string) (*DPoPKey, error) {
		return nil, errors.New("oauthclient: DPoP key: " + msg)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return fail("invalid JWK: " + jwkError(err))
	}
	var priv *ecdsa.PrivateKey
	switch k := jwk.Key.(type) {
	case *ecdsa.PrivateKey:
		priv = k
	case []byte:
		return fail("symmetric (oct) key; DPoP needs an EC P-256 private key")
	default:
		if jwk.IsPublic() {
			return fail("public key only (no private part in the JWK)")
		}
		return fail(fmt.Sprintf("unsupported key type %T; DPoP needs an EC P-256 private key", k))
	}
	switch {
	case priv.Curve != elliptic.P256():
		return fail("EC curve " + priv.Curve.Params().Name + "; DPoP keys are P-256")
	case jwk.Algorithm != "" && jwk.Algorithm != string(jose.ES256):
		return fail(fmt.Sprintf("JWK alg is %q, not ES256", jwk.Algorithm))
	case jwk.Use != "" && jwk.Use != "sig":
		return fail(fmt.Sprintf("JWK use is %q, not \"sig\"", jwk.Use))
	}
	// A store corrupted in d alone would sign proofs that no server can
	// verify against the embedded x/y: caught here instead.
	ecdhPriv, err := priv.ECDH()
	if err != nil {
		return fail("invalid private key")
	}
	ecdhPub, err := priv.PublicKey.ECDH()
	if err != nil || !ecdhPub.Equal(ecdhPriv.PublicKey()) {
		return fail("private and public parts of the JWK do not match")
	}
	return newDPoPKey(priv)
}

// MarshalPrivate returns the private JWK (JSON, with alg ES256 and use
// sig) for the credential store, which must encrypt it.
func (k *DPoPKey) MarshalPrivate() ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("oauthclient: DPoP key: no key")
	}
	out, err := jose.JSONWebKey{Key: k.priv, Algorithm: string(jose.ES256), Use: "sig"}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("oauthclient: DPoP key: encoding: %w", err)
	}
	return out, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url without padding: the `jkt` a server binds tokens to (RFC 9449 §6).
func (k *DPoPKey) Thumbprint() string { return k.jkt }

// String describes the key by its thumbprint only.
func (k *DPoPKey) String() string {
	if k == nil {
		return "DPoPKey(nil)"
	}
	return "DPoPKey(jkt=" + k.jkt + ")"
}

// GoString is String, so that %#v cannot print the private scalar.
func (k *DPoPKey) GoString() string { return k.String() }

// dpopClaims are a proof's claims (RFC 9449 §4.2), in a struct so that
// encoding them is one json.Marshal.
type dpopClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof returns a DPoP proof JWT (RFC 9449 §4.2) for one request: a
// compact JWS with typ dpop+jwt, alg ES256 and the public jwk in the
// protected header; claims jti (128 random bits), htm = method, htu =
// target without query and fragment, iat = now, ath = base64url SHA-256
// of accessToken when it is set (requests to a resource server), and
// nonce when it is set.
func (k *DPoPKey) Proof(method, target, accessToken, nonce string) (string, error) {
	if k == nil || k.signer == nil {
		return "", errors.New("oauthclient: DPoP proof: no key")
	}
	if method == "" {
		return "", errors.New("oauthclient: DPoP proof: no HTTP method")
	}
	htu, err := proofTarget(target)
	if err != nil {
		return "", err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("oauthclient: DPoP proof: jti: %w", err)
	}
	c := dpopClaims{
		JTI:   base64.RawURLEncoding.EncodeToString(id[:]),
		HTM:   method,
		HTU:   htu,
		IAT:   time.Now().Unix(),
		Nonce: nonce,
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("oauthclient: DPoP proof: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oauthclient: DPoP proof: signing: %w", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("oauthclient: DPoP proof: %w", err)
	}
	return out, nil
}

// proofTarget is the htu for target: the URL without query and fragment
// (RFC 9449 §4.2). It only checks for an http(s) scheme rather than
// parsing the URL, since it runs on every proxied request; the error
// does not repeat the target, whose query may hold secrets.
func proofTarget(target string) (string, error) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok || rest == "" || (!strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "http")) {
		return "", errors.New("oauthclient: DPoP proof: the target is not an absolute http(s) URL")
	}
	return target, nil
}

// Bounds of DPoPNonces.
const (
	// maxNonceOrigins bounds the origins remembered, so that a gateway
	// talking to many servers cannot grow the table without limit.
	maxNonceOrigins = 1024
	// maxNonceLen bounds a remembered nonce; real ones are short.
	maxNonceLen = 512
)

// DPoPNonces remembers the latest DPoP-Nonce per origin
// (scheme://host:port), for at most 1024 origins: when full, an arbitrary
// one is dropped (its next request just costs one nonce round trip). The
// zero value is usable, a nil *DPoPNonces remembers nothing, and it is
// safe for concurrent use.
type DPoPNonces struct {
	mu sync.Mutex
	m  map[string]string
}

// Get returns the nonce remembered for origin, or "".
func (n *DPoPNonces) Get(origin string) string {
	if n == nil {
		return ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[origin]
}

// Set remembers nonce for origin. Empty nonces, nonces over 512 bytes and
// nonces with characters outside RFC 9449's NQCHAR are ignored: they could
// not be sent back in a proof anyway, and a hostile server should not be
// able to store arbitrary text in the gateway.
func (n *DPoPNonces) Set(origin, nonce string) {
	if n == nil || origin == "" || !validNonce(nonce) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if _, ok := n.m[origin]; !ok && len(n.m) >= maxNonceOrigins {
		for k := range n.m { // map order: an arbitrary victim
			delete(n.m, k)
			break
		}
	}
	n.m[origin] = nonce
}

// validNonce reports a non-empty nonce of at most 512 NQCHARs
// (%x21 / %x23-5B / %x5D-7E, RFC 9449 §8.1).
func validNonce(s string) bool {
	if s == "" || len(s) > maxNonceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// OriginOf returns the origin of rawURL as scheme://host:port, lower-cased
// with the default port made explicit, so that every spelling of one
// server shares its nonce; "" when rawURL is not an absolute URL.
func OriginOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		default:
			return ""
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// UseDPoPNonce reports whether a response asks for a retry with a nonce
// (RFC 9449 §8, §9), and the nonce: an authorization server's 400 with
// the JSON body's error "use_dpop_nonce", or a resource server's 401
// with a `WWW-Authenticate: DPoP error="use_dpop_nonce"` challenge (in
// any header field, next to other challenges). The nonce is the
// DPoP-Nonce header; without a valid one, ok is false, since a retry
// could only fail the same way.
func UseDPoPNonce(status int, header http.Header, body []byte) (nonce string, ok bool) {
	nonce = header.Get("DPoP-Nonce")
	if !validNonce(nonce) {
		return "", false
	}
	switch status {
	case http.StatusBadRequest:
		var e struct {
			Error any `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error == "use_dpop_nonce" {
			return nonce, true
		}
	case http.StatusUnauthorized:
		for _, ch := range challenge.Parse(header.Values("WWW-Authenticate")) {
			if ch.Scheme == "dpop" && ch.Param("error") == "use_dpop_nonce" {
				return nonce, true
			}
		}
	}
	return "", false
}
