package oauthclient

// Client assertions (RFC 7523 §2.2, RFC 7521 §4.2): private_key_jwt and
// client_secret_jwt client authentication. Every JWS and JWK operation is
// go-jose's.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client authentication methods, beside the existing AuthBasic/AuthPost/AuthNone.
const (
	AuthPrivateKeyJWT   = "private_key_jwt"
	AuthClientSecretJWT = "client_secret_jwt"
)

// clientAssertionType is the client_assertion_type of a JWT client
// assertion (RFC 7523 §2.2).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is exp - iat of a client assertion: short, since it
// is sent at once and a server may remember its jti until it expires.
const assertionLifetime = 60 * time.Second

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
const minRSABits = 2048

// SigningKey is a private key for private_key_jwt with its JWS algorithm and key id.
type SigningKey struct {
	Key       crypto.Signer           // *ecdsa.PrivateKey, *rsa.PrivateKey or ed25519.PrivateKey
	Algorithm jose.SignatureAlgorithm // from the key: ES256 (P-256), ES384 (P-384), RS256 (RSA; PS256 when asked), EdDSA
	KeyID     string                  // default: the RFC 7638 thumbprint (base64url SHA-256) of the public JWK
}

// String describes the key without its material, so that a key printed
// by mistake (%v, %+v) shows only its algorithm and key id.
func (k *SigningKey) String() string {
	if k == nil {
		return "SigningKey(nil)"
	}
	return fmt.Sprintf("SigningKey(alg=%s kid=%s)", k.Algorithm, k.KeyID)
}

// LoadSigningKey reads a PEM file (PKCS#8, PKCS#1 RSA, SEC1 EC) or a JWK file (a single private JWK, or a JWKS with exactly one private key).
// alg "" picks the algorithm from the key; "PS256" is accepted for RSA keys. kid "" uses the thumbprint (or the JWK's own kid if present).
// Errors name the path and what is wrong ("no PEM block", "unsupported key type", "not a private key", ...), never the key material.
func LoadSigningKey(path, alg, kid string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: signing key %s: %w", path, err)
	}
	k, err := parseSigningKey(data, alg, kid)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: signing key %s: %w", path, err)
	}
	return k, nil
}

// ParseSigningKey is LoadSigningKey on bytes (for tests and placeholders).
func ParseSigningKey(data []byte, alg, kid string) (*SigningKey, error) {
	k, err := parseSigningKey(data, alg, kid)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: signing key: %w", err)
	}
	return k, nil
}

func parseSigningKey(data []byte, alg, kid string) (*SigningKey, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("empty file")
	}
	var (
		key            crypto.Signer
		jwkAlg, jwkKID string
		err            error
	)
	if trimmed[0] == '{' {
		key, jwkAlg, jwkKID, err = parseJWKKey(trimmed)
	} else {
		key, err = parsePEMKey(trimmed)
	}
	if err != nil {
		return nil, err
	}
	if alg == "" {
		alg = jwkAlg
	}
	if kid == "" {
		kid = jwkKID
	}
	return newSigningKey(key, alg, kid)
}

// newSigningKey checks key and alg against each other and fills in the
// defaults.
func newSigningKey(key crypto.Signer, alg, kid string) (*SigningKey, error) {
	a, err := keyAlgorithm(key, jose.SignatureAlgorithm(alg))
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = thumbprint(key); err != nil {
			return nil, err
		}
	}
	return &SigningKey{Key: key, Algorithm: a, KeyID: kid}, nil
}

// parsePEMKey finds the one private key among the PEM blocks of data,
// skipping EC PARAMETERS and any other block that is not a key.
func parsePEMKey(data []byte) (crypto.Signer, error) {
	var (
		found  crypto.Signer
		public bool
		rest   = data
		blocks int
	)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted private keys are not supported")
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			public = true
			continue
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", b.Type, err)
		}
		if found != nil {
			return nil, errors.New("more than one private key")
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		found = s
	}
	switch {
	case found != nil:
		return found, nil
	case blocks == 0:
		return nil, errors.New("no PEM block (nor a JWK)")
	case public:
		return nil, errors.New("not a private key (public key or certificate only)")
	default:
		return nil, errors.New("no private key PEM block")
	}
}

// parseJWKKey reads a single JWK or a JWKS holding exactly one private
// key, and returns the key with the JWK's own alg and kid.
func parseJWKKey(data []byte) (crypto.Signer, string, string, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		// The JSON error could quote part of the key: not repeated.
		return nil, "", "", errors.New("invalid JSON (expected a JWK or JWKS)")
	}
	var keys []jose.JSONWebKey
	if _, ok := probe["keys"]; ok {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, "", "", fmt.Errorf("invalid JWKS: %s", jwkError(err))
		}
		keys = set.Keys
		if len(keys) == 0 {
			return nil, "", "", errors.New("JWKS has no keys")
		}
	} else {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(data); err != nil {
			return nil, "", "", fmt.Errorf("invalid JWK: %s", jwkError(err))
		}
		keys = []jose.JSONWebKey{k}
	}
	var (
		found    *jose.JSONWebKey
		nPrivate int
	)
	for i := range keys {
		switch keys[i].Key.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
			nPrivate++
			found = &keys[i]
		}
	}
	switch {
	case nPrivate > 1:
		return nil, "", "", fmt.Errorf("JWKS has %d private keys, want exactly one", nPrivate)
	case nPrivate == 0 && len(keys) == 1 && !keys[0].IsPublic():
		return nil, "", "", fmt.Errorf("unsupported key type %T (not an asymmetric private key)", keys[0].Key)
	case nPrivate == 0:
		return nil, "", "", errors.New("not a private key (no private key in the JWK)")
	}
	if found.Use != "" && found.Use != "sig" {
		return nil, "", "", fmt.Errorf("JWK use is %q, not \"sig\"", found.Use)
	}
	return found.Key.(crypto.Signer), found.Algorithm, found.KeyID, nil
}

// jwkError is the text of a JWK decoding error that cannot carry key
// material: go-jose's own messages name parameters, not values, but a
// JSON syntax error could quote the input.
func jwkError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) {
		return "malformed JSON"
	}
	return err.Error()
}

// keyAlgorithm returns the JWS algorithm for key: want when it suits the
// key, the key's own when want is "".
func keyAlgorithm(key crypto.Signer, want jose.SignatureAlgorithm) (jose.SignatureAlgorithm, error) {
	var def jose.SignatureAlgorithm
	allowed := map[jose.SignatureAlgorithm]bool{}
	if key == nil {
		return "", errors.New("no key")
	}
	// By the public half, so that a hardware or KMS crypto.Signer works too.
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			def = jose.ES256
		case elliptic.P384():
			def = jose.ES384
		case elliptic.P521():
			def = jose.ES512
		default:
			return "", fmt.Errorf("unsupported key type: EC curve %s", k.Curve.Params().Name)
		}
		allowed[def] = true
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits, want at least %d", bits, minRSABits)
		}
		def = jose.RS256
		allowed[jose.RS256], allowed[jose.PS256] = true, true
	case ed25519.PublicKey:
		def = jose.EdDSA
		allowed[def] = true
	default:
		return "", fmt.Errorf("unsupported key type %T", key)
	}
	if want == "" {
		return def, nil
	}
	if !allowed[want] {
		return "", fmt.Errorf("algorithm %s does not suit the key (%s)", want, def)
	}
	return want, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the
// key's public half.
func thumbprint(key crypto.Signer) (string, error) {
	jwk := jose.JSONWebKey{Key: key.Public()}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("unsupported key type %T", key)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// resolve returns the algorithm and key id to sign with, filling in the
// defaults of a SigningKey built by hand, without changing it.
func (k *SigningKey) resolve() (jose.SignatureAlgorithm, string, error) {
	if k == nil || k.Key == nil {
		return "", "", errors.New("no signing key")
	}
	alg, err := keyAlgorithm(k.Key, k.Algorithm)
	if err != nil {
		return "", "", err
	}
	kid := k.KeyID
	if kid == "" {
		if kid, err = thumbprint(k.Key); err != nil {
			return "", "", err
		}
	}
	return alg, kid, nil
}

// PublicJWKS returns the public keys as a JWKS document (JSON bytes: {"keys":[...]}) with kid, alg and use "sig".
func PublicJWKS(keys ...*SigningKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for i, k := range keys {
		alg, kid, err := k.resolve()
		if err != nil {
			return nil, fmt.Errorf("oauthclient: JWKS key %d: %w", i, err)
		}
		jwk := jose.JSONWebKey{Key: k.Key.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}
		if !jwk.IsPublic() || !jwk.Valid() {
			return nil, fmt.Errorf("oauthclient: JWKS key %d: unsupported public key type %T", i, jwk.Key)
		}
		set.Keys = append(set.Keys, jwk)
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: encoding JWKS: %w", err)
	}
	return out, nil
}

// NewAssertion builds a client assertion JWT (RFC 7523 §2.2 / RFC 7521 §4.2): iss = sub = clientID, aud = audience (a single string:
// the authorization server's issuer identifier), jti unique (random 16 bytes base64url), iat = now, exp = now + 60 s, nbf omitted.
// Signed with key (header kid set, typ "JWT") for private_key_jwt, or HS256 with the client secret as key for client_secret_jwt.
//
// A non-nil key is used and secret ignored; with a nil key, secret must
// be set.
func NewAssertion(clientID, audience string, key *SigningKey, secret string, now time.Time) (string, error) {
	if clientID == "" {
		return "", errors.New("oauthclient: client assertion: no client_id")
	}
	if audience == "" {
		return "", errors.New("oauthclient: client assertion: no audience (the authorization server's issuer)")
	}
	var sk jose.SigningKey
	opts := (&jose.SignerOptions{}).WithType("JWT")
	switch {
	case key != nil:
		alg, kid, err := key.resolve()
		if err != nil {
			return "", fmt.Errorf("oauthclient: client assertion: %w", err)
		}
		var signer any = key.Key
		switch key.Key.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		default:
			signer = cryptosigner.Opaque(key.Key) // a hardware or KMS crypto.Signer
		}
		sk = jose.SigningKey{Algorithm: alg, Key: signer}
		opts = opts.WithHeader("kid", kid)
	case secret != "":
		sk = jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}
	default:
		return "", errors.New("oauthclient: client assertion: no signing key or client secret")
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		return "", fmt.Errorf("oauthclient: client assertion: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("oauthclient: client assertion: jti: %w", err)
	}
	claims := jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{audience}, // one member: encoded as a string
		ID:       base64.RawURLEncoding.EncodeToString(id[:]),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	out, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("oauthclient: client assertion: signing: %w", err)
	}
	return out, nil
}
