package oauthclient

// DPoP (RFC 9449): sender-constrained tokens. A DPoPKey signs one proof
// JWT per HTTP request; DPoPNonces remembers the server-provided nonces
// proofs must carry.
//
// A proof is built at the cost of its signature: the protected header
// (typ, alg and the public JWK) is encoded once per key, and each proof
// writes its claims by hand into a stack buffer, signs header.claims once
// and appends the raw signature, with no reflection and no JOSE library
// on the request path. Keys are read and written as JWKs with go-jose,
// and the tests verify proofs with go-jose as an independent parser.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/oauthgw/caddy-oauth-gateway/challenge"
)

// dpopType is the typ header of a DPoP proof (RFC 9449 §4.2).
const dpopType = "dpop+jwt"

// The JWS algorithms a DPoPKey signs proofs with.
const (
	// DPoPES256 is ECDSA P-256 with SHA-256 (RFC 7518 §3.4), the default.
	DPoPES256 = "ES256"
	// DPoPEdDSA is Ed25519 (RFC 8037 §3.1).
	DPoPEdDSA = "EdDSA"
)

// ChooseDPoPAlgorithm picks the algorithm of a new DPoP key: EdDSA when
// the authorization server lists it in dpop_signing_alg_values_supported
// (JWS alg values are case-sensitive) and the operator allows it, else
// ES256, the default, which every DPoP server is expected to accept.
func ChooseDPoPAlgorithm(supported []string, allowEdDSA bool) string {
	if allowEdDSA && slices.Contains(supported, DPoPEdDSA) {
		return DPoPEdDSA
	}
	return DPoPES256
}

// dpopSigSize is the size of a proof's signature with either algorithm:
// R||S of 32 bytes each for ES256 (RFC 7518 §3.4), or an Ed25519
// signature (RFC 8032 §5.1.6).
const dpopSigSize = 64

// DPoPKey is one credential's DPoP key: an ECDSA P-256 key that signs
// proofs with ES256, or an Ed25519 key that signs them with EdDSA. It is
// safe for concurrent use; its methods never put key material in errors,
// and printing it (%v, %#v) shows only the thumbprint.
type DPoPKey struct {
	alg string
	ec  *ecdsa.PrivateKey  // ES256
	ed  ed25519.PrivateKey // EdDSA
	// header is the protected header, base64url-encoded, followed by the
	// '.' of the compact serialization: the first bytes of every proof.
	header string
	jkt    string
}

// NewDPoPKey generates a fresh ECDSA P-256 key (alg ES256).
func NewDPoPKey() (*DPoPKey, error) { return NewDPoPKeyFor(DPoPES256) }

// NewDPoPKeyFor generates a fresh key for alg: DPoPES256 (or "") for an
// ECDSA P-256 key, DPoPEdDSA for an Ed25519 key.
func NewDPoPKeyFor(alg string) (*DPoPKey, error) {
	switch alg {
	case DPoPES256, "":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("oauthclient: DPoP key: %w", err)
		}
		return newECDPoPKey(priv)
	case DPoPEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("oauthclient: DPoP key: %w", err)
		}
		return newEdDPoPKey(priv)
	}
	return nil, fmt.Errorf("oauthclient: DPoP key: unsupported algorithm %q (want %s or %s)", alg, DPoPES256, DPoPEdDSA)
}

var b64 = base64.RawURLEncoding

func newECDPoPKey(priv *ecdsa.PrivateKey) (*DPoPKey, error) {
	if priv.Curve != elliptic.P256() {
		return nil, errors.New("oauthclient: DPoP key: not a P-256 key")
	}
	// The uncompressed point 0x04||X||Y, with X and Y of the curve's full
	// 32 bytes, as RFC 7518 §6.2.1.2 wants x and y; ECDH also checks the
	// point is on the curve.
	pub, err := priv.PublicKey.ECDH()
	if err != nil {
		return nil, errors.New("oauthclient: DPoP key: invalid public key")
	}
	pt := pub.Bytes()
	if len(pt) != 65 || pt[0] != 4 {
		return nil, errors.New("oauthclient: DPoP key: invalid public key")
	}
	jwk := `{"crv":"P-256","kty":"EC","x":"` + b64.EncodeToString(pt[1:33]) + `","y":"` + b64.EncodeToString(pt[33:]) + `"}`
	k := &DPoPKey{alg: DPoPES256, ec: priv}
	k.setPublic(jwk)
	return k, nil
}

func newEdDPoPKey(priv ed25519.PrivateKey) (*DPoPKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("oauthclient: DPoP key: invalid Ed25519 key")
	}
	pub := priv.Public().(ed25519.PublicKey)
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(pub) + `"}`
	k := &DPoPKey{alg: DPoPEdDSA, ed: priv}
	k.setPublic(jwk)
	return k, nil
}

// setPublic derives the header and the thumbprint from the public JWK,
// which holds exactly the required members in lexicographic order with
// no whitespace: the RFC 7638 thumbprint input, and a valid public JWK.
// The values are base64url without padding and contain no character JSON
// would escape, as do alg and typ.
func (k *DPoPKey) setPublic(jwk string) {
	sum := sha256.Sum256([]byte(jwk))
	k.jkt = b64.EncodeToString(sum[:])
	k.header = b64.EncodeToString([]byte(`{"typ":"`+dpopType+`","alg":"`+k.alg+`","jwk":`+jwk+`}`)) + "."
}

// ParseDPoPKey reads a private JWK as MarshalPrivate writes it: an EC
// P-256 key (ES256) or an OKP Ed25519 key (EdDSA). It refuses public-only,
// symmetric and other keys, and a JWK whose alg or use does not suit DPoP
// or its key, naming the fault but never the key material.
func ParseDPoPKey(data []byte) (*DPoPKey, error) {
	fail := func(msg string) (*DPoPKey, error) {
		return nil, errors.New("oauthclient: DPoP key: " + msg)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return fail("invalid JWK: " + jwkError(err))
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return fail(fmt.Sprintf("JWK use is %q, not \"sig\"", jwk.Use))
	}
	switch k := jwk.Key.(type) {
	case *ecdsa.PrivateKey:
		switch {
		case k.Curve != elliptic.P256():
			return fail("EC curve " + k.Curve.Params().Name + "; DPoP keys are P-256")
		case jwk.Algorithm != "" && jwk.Algorithm != DPoPES256:
			return fail(fmt.Sprintf("JWK alg is %q, not ES256", jwk.Algorithm))
		}
		// A store corrupted in d alone would sign proofs that no server
		// can verify against the embedded x/y: caught here instead.
		ecdhPriv, err := k.ECDH()
		if err != nil {
			return fail("invalid private key")
		}
		ecdhPub, err := k.PublicKey.ECDH()
		if err != nil || !ecdhPub.Equal(ecdhPriv.PublicKey()) {
			return fail("private and public parts of the JWK do not match")
		}
		return newECDPoPKey(k)
	case ed25519.PrivateKey:
		if jwk.Algorithm != "" && jwk.Algorithm != DPoPEdDSA {
			return fail(fmt.Sprintf("JWK alg is %q, not EdDSA", jwk.Algorithm))
		}
		// go-jose derives the key from d and compares x; checked again
		// here so that the guarantee does not rest on a library detail.
		if len(k) != ed25519.PrivateKeySize {
			return fail("invalid private key")
		}
		derived := ed25519.NewKeyFromSeed(k.Seed())
		if !derived.Public().(ed25519.PublicKey).Equal(k.Public()) {
			return fail("private and public parts of the JWK do not match")
		}
		return newEdDPoPKey(derived)
	case []byte:
		return fail("symmetric (oct) key; DPoP needs an EC P-256 or Ed25519 private key")
	default:
		if jwk.IsPublic() {
			return fail("public key only (no private part in the JWK)")
		}
		return fail(fmt.Sprintf("unsupported key type %T; DPoP needs an EC P-256 or Ed25519 private key", k))
	}
}

// MarshalPrivate returns the private JWK (JSON, with alg ES256 or EdDSA
// and use sig) for the credential store, which must encrypt it.
func (k *DPoPKey) MarshalPrivate() ([]byte, error) {
	if k == nil || (k.ec == nil && k.ed == nil) {
		return nil, errors.New("oauthclient: DPoP key: no key")
	}
	jwk := jose.JSONWebKey{Algorithm: k.alg, Use: "sig"}
	if k.ec != nil {
		jwk.Key = k.ec
	} else {
		jwk.Key = k.ed
	}
	out, err := jwk.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("oauthclient: DPoP key: encoding: %w", err)
	}
	return out, nil
}

// Algorithm is the JWS alg the key signs proofs with: DPoPES256 or
// DPoPEdDSA.
func (k *DPoPKey) Algorithm() string { return k.alg }

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

// proofStackSize is the signing input a proof builds on the stack; a
// longer one (a very long htu or nonce) moves to the heap by append.
const proofStackSize = 1024

// Proof returns a DPoP proof JWT (RFC 9449 §4.2) for one request: a
// compact JWS with typ dpop+jwt, the key's alg and its public jwk in the
// protected header; claims jti (128 random bits), htm = method, htu =
// target without query and fragment, iat = now, ath = base64url SHA-256
// of accessToken when it is set (requests to a resource server), and
// nonce when it is set. method, target and nonce must be valid UTF-8, so
// that the claims a server decodes are exactly these strings.
func (k *DPoPKey) Proof(method, target, accessToken, nonce string) (string, error) {
	if k == nil || k.header == "" {
		return "", errors.New("oauthclient: DPoP proof: no key")
	}
	if method == "" {
		return "", errors.New("oauthclient: DPoP proof: no HTTP method")
	}
	htu, err := proofTarget(target)
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(method) || !utf8.ValidString(htu) || !utf8.ValidString(nonce) {
		return "", errors.New("oauthclient: DPoP proof: the method, target or nonce is not valid UTF-8")
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("oauthclient: DPoP proof: jti: %w", err)
	}

	// The claims JSON, by hand: fixed member names, base64url and decimal
	// values that need no escaping, and appendJSONString for the strings
	// that come from outside.
	var claimsBuf [proofStackSize / 2]byte
	c := append(claimsBuf[:0], `{"jti":"`...)
	c = b64.AppendEncode(c, id[:])
	c = append(c, `","htm":`...)
	c = appendJSONString(c, method)
	c = append(c, `,"htu":`...)
	c = appendJSONString(c, htu)
	c = append(c, `,"iat":`...)
	c = strconv.AppendInt(c, time.Now().Unix(), 10)
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c = append(c, `,"ath":"`...)
		c = b64.AppendEncode(c, sum[:])
		c = append(c, '"')
	}
	if nonce != "" {
		c = append(c, `,"nonce":`...)
		c = appendJSONString(c, nonce)
	}
	c = append(c, '}')

	// The signing input: base64url(header) '.' base64url(claims).
	var inputBuf [proofStackSize]byte
	in := append(inputBuf[:0], k.header...)
	in = b64.AppendEncode(in, c)

	sig, err := k.sign(in)
	if err != nil {
		return "", fmt.Errorf("oauthclient: DPoP proof: signing: %w", err)
	}
	var sigBuf [88]byte // base64url of 64 bytes: 86 characters
	encSig := b64.AppendEncode(sigBuf[:0], sig[:])

	var out strings.Builder
	out.Grow(len(in) + 1 + len(encSig))
	out.Write(in)
	out.WriteByte('.')
	out.Write(encSig)
	return out.String(), nil
}

// sign returns the JWS signature of input: for ES256 the fixed-size
// R||S of RFC 7518 §3.4 (not the ASN.1 DER form crypto/ecdsa returns),
// for EdDSA the Ed25519 signature.
func (k *DPoPKey) sign(input []byte) (sig [dpopSigSize]byte, err error) {
	if k.ed != nil {
		copy(sig[:], ed25519.Sign(k.ed, input))
		return sig, nil
	}
	digest := sha256.Sum256(input)
	der, err := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
	if err != nil {
		return sig, err
	}
	if !derToRawP256(der, &sig) {
		return sig, errors.New("unexpected ECDSA signature encoding")
	}
	return sig, nil
}

// derToRawP256 converts an ASN.1 DER ECDSA signature, SEQUENCE { r
// INTEGER, s INTEGER }, to r||s as two 32-byte big-endian values, left-
// padded with zeros. It reports false for anything else, including a
// negative or zero value or one wider than 32 bytes.
func derToRawP256(der []byte, out *[dpopSigSize]byte) bool {
	var seq, r, s cryptobyte.String
	input := cryptobyte.String(der)
	if !input.ReadASN1(&seq, asn1.SEQUENCE) || !input.Empty() ||
		!seq.ReadASN1(&r, asn1.INTEGER) || !seq.ReadASN1(&s, asn1.INTEGER) || !seq.Empty() {
		return false
	}
	*out = [dpopSigSize]byte{}
	return putScalar(out[:32], r) && putScalar(out[32:], s)
}

// putScalar writes the positive DER INTEGER content v right-aligned in
// dst (32 bytes).
func putScalar(dst []byte, v []byte) bool {
	if len(v) == 0 || v[0]&0x80 != 0 {
		return false // empty or negative
	}
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > len(dst) {
		return false // zero, or wider than the curve
	}
	copy(dst[len(dst)-len(v):], v)
	return true
}

// appendJSONString appends s as a JSON string (RFC 8259 §7): '"' and '\'
// escaped, control characters as \n, \r, \t or \u00XX, everything else,
// UTF-8 included, as is. s must be valid UTF-8 (the caller checks), so
// that a parser decodes exactly s.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 0x20 && ch != '"' && ch != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch ch {
		case '"', '\\':
			dst = append(dst, '\\', ch)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
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
