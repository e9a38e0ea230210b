package fakeoauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// dpopKey is a test client's DPoP key.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jkt  string
}

func newDPoPKey(t *testing.T) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{priv: priv, jkt: base64.RawURLEncoding.EncodeToString(sum)}
}

// proofSpec describes a proof; zero fields take good defaults.
type proofSpec struct {
	htm, htu string
	iat      time.Time // zero: now
	jti      string    // "": random; "-": omitted
	token    string    // hashed into ath when set
	ath      string    // sent as is when set (overrides token)
	nonce    string
	typ      string // "": dpop+jwt; "-": omitted
	hmac     []byte // sign HS256 with this instead
	jwk      any    // a header jwk to send instead of the signing key's
	noJWK    bool
}

// proof builds a DPoP proof with go-jose, as a client would.
func (k *dpopKey) proof(t *testing.T, s proofSpec) string {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: !s.noJWK && s.jwk == nil}
	switch s.typ {
	case "":
		opts = opts.WithType("dpop+jwt")
	case "-":
	default:
		opts = opts.WithType(jose.ContentType(s.typ))
	}
	if s.jwk != nil {
		raw, err := json.Marshal(s.jwk)
		if err != nil {
			t.Fatal(err)
		}
		opts = opts.WithHeader("jwk", json.RawMessage(raw))
	}
	sk := jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}
	if s.hmac != nil {
		sk = jose.SigningKey{Algorithm: jose.HS256, Key: s.hmac}
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"htm": s.htm, "htu": s.htu}
	switch s.jti {
	case "":
		claims["jti"] = randomString()
	case "-":
	default:
		claims["jti"] = s.jti
	}
	iat := s.iat
	if iat.IsZero() {
		iat = time.Now()
	}
	claims["iat"] = iat.Unix()
	if s.token != "" {
		sum := sha256.Sum256([]byte(s.token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if s.ath != "" {
		claims["ath"] = s.ath
	}
	if s.nonce != "" {
		claims["nonce"] = s.nonce
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startDPoPAS starts an AuthServer on a real listener with client c1.
func startDPoPAS(t *testing.T, opts AuthServerOptions) *AuthServer {
	t.Helper()
	as, err := StartAuthServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.AddClient("c1", "s1")
	return as
}

// postDPoP sends a token request with the given DPoP header values.
func postDPoP(t *testing.T, as *AuthServer, form url.Values, proofs ...string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, as.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth("c1", "s1")
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ans := tokenAnswer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &ans.json)
	return ans
}

func TestDPoPTokenHappyPath(t *testing.T) {
	as := startDPoPAS(t, AuthServerOptions{})
	k := newDPoPKey(t)
	ans := postDPoP(t, as, cc("read", ""), k.proof(t, proofSpec{htm: "POST", htu: as.TokenURL()}))
	if ans.status != 200 || ans.str("token_type") != "DPoP" {
		t.Fatalf("%d %s", ans.status, ans.raw)
	}
	if got := as.BoundKey(ans.str("access_token")); got != k.jkt {
		t.Fatalf("bound to %q, want %q", got, k.jkt)
	}
	if v, f := as.DPoPStats(); v != 1 || len(f) != 0 {
		t.Fatalf("stats %d %v", v, f)
	}
	if r := as.Requests(); r[0].DPoPKey != k.jkt {
		t.Fatalf("log %+v", r[0])
	}
	// Without a proof, nothing changes: Bearer, unbound.
	plain := postToken(t, as, basic(cc("read", "")))
	if plain.status != 200 || plain.str("token_type") != "Bearer" || as.BoundKey(plain.str("access_token")) != "" {
		t.Fatalf("plain %d %s", plain.status, plain.raw)
	}
}

func TestDPoPTokenAnswerBearer(t *testing.T) {
	as := startDPoPAS(t, AuthServerOptions{DPoPAnswerBearer: true})
	k := newDPoPKey(t)
	ans := postDPoP(t, as, cc("", ""), k.proof(t, proofSpec{htm: "POST", htu: as.TokenURL()}))
	if ans.status != 200 || ans.str("token_type") != "Bearer" || as.BoundKey(ans.str("access_token")) != "" {
		t.Fatalf("%d %s", ans.status, ans.raw)
	}
}

func TestDPoPTokenNonce(t *testing.T) {
	as := startDPoPAS(t, AuthServerOptions{DPoPNonce: true})
	k := newDPoPKey(t)
	ans := postDPoP(t, as, cc("", ""), k.proof(t, proofSpec{htm: "POST", htu: as.TokenURL()}))
	nonce := ans.header.Get("DPoP-Nonce")
	if ans.status != 400 || ans.str("error") != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("%d %s nonce %q", ans.status, ans.raw, nonce)
	}
	ans = postDPoP(t, as, cc("", ""), k.proof(t, proofSpec{htm: "POST", htu: as.TokenURL(), nonce: nonce}))
	if ans.status != 200 || ans.str("token_type") != "DPoP" || ans.header.Get("DPoP-Nonce") != nonce {
		t.Fatalf("%d %s", ans.status, ans.raw)
	}
	as.RotateDPoPNonce()
	ans = postDPoP(t, as, cc("", ""), k.proof(t, proofSpec{htm: "POST", htu: as.TokenURL(), nonce: nonce}))
	if next := ans.header.Get("DPoP-Nonce"); ans.status != 400 || ans.str("error") != "use_dpop_nonce" || next == nonce || next == "" {
		t.Fatalf("after rotation: %d %s", ans.status, ans.raw)
	}
	// A request without a proof is not asked for a nonce.
	if plain := postToken(t, as, basic(cc("", ""))); plain.status != 200 {
		t.Fatalf("plain %d", plain.status)
	}
	if v, f := as.DPoPStats(); v != 1 || len(f) != 0 {
		t.Fatalf("stats %d %v", v, f)
	}
}

func TestDPoPTokenRejections(t *testing.T) {
	as := startDPoPAS(t, AuthServerOptions{})
	k, other := newDPoPKey(t), newDPoPKey(t)
	good := proofSpec{htm: "POST", htu: as.TokenURL()}
	with := func(f func(*proofSpec)) string {
		s := good
		f(&s)
		return k.proof(t, s)
	}
	for _, tc := range []struct {
		name   string
		proofs []string
		want   string
	}{
		{"typ", []string{with(func(s *proofSpec) { s.typ = "JWT" })}, "typ"},
		{"no typ", []string{with(func(s *proofSpec) { s.typ = "-" })}, "typ"},
		{"HS256", []string{with(func(s *proofSpec) { s.hmac = []byte("0123456789abcdef0123456789abcdef") })}, "alg HS256 is not asymmetric"},
		{"no jwk", []string{with(func(s *proofSpec) { s.noJWK = true })}, "no jwk"},
		{"private jwk", []string{with(func(s *proofSpec) { s.jwk = jose.JSONWebKey{Key: k.priv} })}, "jwk is not a valid public key"},
		{"other key", []string{with(func(s *proofSpec) { s.jwk = jose.JSONWebKey{Key: &other.priv.PublicKey} })}, "signature"},
		{"htm", []string{with(func(s *proofSpec) { s.htm = "GET" })}, "htm"},
		{"htu", []string{with(func(s *proofSpec) { s.htu = as.URL() + "/other" })}, "htu"},
		{"htu query", []string{with(func(s *proofSpec) { s.htu = as.TokenURL() + "?code=secret" })}, "htu"},
		{"old iat", []string{with(func(s *proofSpec) { s.iat = time.Now().Add(-2 * time.Minute) })}, "iat"},
		{"future iat", []string{with(func(s *proofSpec) { s.iat = time.Now().Add(2 * time.Minute) })}, "iat"},
		{"no jti", []string{with(func(s *proofSpec) { s.jti = "-" })}, "jti is missing"},
		{"two headers", []string{with(func(*proofSpec) {}), with(func(*proofSpec) {})}, "more than one"},
		{"garbage", []string{"not.a.jws"}, "not a compact JWS"},
	} {
		ans := postDPoP(t, as, cc("", ""), tc.proofs...)
		if ans.status != 400 || ans.str("error") != "invalid_dpop_proof" || !strings.Contains(ans.str("error_description"), tc.want) {
			t.Errorf("%s: %d %s", tc.name, ans.status, ans.raw)
		}
		if strings.Contains(ans.raw, "secret") {
			t.Errorf("%s: the htu query was echoed: %s", tc.name, ans.raw)
		}
	}
	// A replayed proof: accepted once, refused the second time.
	p := with(func(s *proofSpec) { s.jti = "fixed-jti" })
	if ans := postDPoP(t, as, cc("", ""), p); ans.status != 200 {
		t.Fatalf("first use %d %s", ans.status, ans.raw)
	}
	if ans := postDPoP(t, as, cc("", ""), p); ans.status != 400 || !strings.Contains(ans.str("error_description"), "jti was already used") {
		t.Fatalf("replay %d %s", ans.status, ans.raw)
	}
	if v, f := as.DPoPStats(); v != 1 || len(f) != 15 {
		t.Fatalf("stats %d %d %v", v, len(f), f)
	}
	if n := len(as.IssuedSecrets()); n != 1 {
		t.Fatalf("%d tokens issued for refused proofs", n-1)
	}
}

func TestDPoPRefreshBinding(t *testing.T) {
	as := startDPoPAS(t, AuthServerOptions{Rotate: true})
	k, other := newDPoPKey(t), newDPoPKey(t)
	prove := func(key *dpopKey) string { return key.proof(t, proofSpec{htm: "POST", htu: as.TokenURL()}) }
	// An unbound refresh token refreshed with a proof yields bound tokens.
	rt0 := as.IssueRefreshToken("c1", []string{"read"})
	ans := postDPoP(t, as, refreshForm(rt0), prove(k))
	rt1 := ans.str("refresh_token")
	if ans.status != 200 || ans.str("token_type") != "DPoP" || rt1 == "" || as.BoundKey(ans.str("access_token")) != k.jkt {
		t.Fatalf("%d %s", ans.status, ans.raw)
	}
	// Another key, or none: invalid_grant, and the token is not spent.
	if ans := postDPoP(t, as, refreshForm(rt1), prove(other)); ans.status != 400 || ans.str("error") != "invalid_grant" {
		t.Fatalf("other key: %d %s", ans.status, ans.raw)
	}
	if ans := postDPoP(t, as, refreshForm(rt1)); ans.status != 400 || ans.str("error") != "invalid_grant" {
		t.Fatalf("no proof: %d %s", ans.status, ans.raw)
	}
	if as.ReuseDetections() != 0 {
		t.Fatal("a refused key counted as reuse")
	}
	ans = postDPoP(t, as, refreshForm(rt1), prove(k))
	if ans.status != 200 || ans.str("refresh_token") == "" || as.BoundKey(ans.str("access_token")) != k.jkt {
		t.Fatalf("right key: %d %s", ans.status, ans.raw)
	}
	// Rotation and reuse detection work as before.
	if ans := postDPoP(t, as, refreshForm(rt1), prove(k)); ans.status != 400 || as.ReuseDetections() != 1 {
		t.Fatalf("reuse: %d %s, %d detections", ans.status, ans.raw, as.ReuseDetections())
	}
}

// startDPoPUpstream starts an Upstream on a real listener, and gets a
// token bound to k for it.
func startDPoPUpstream(t *testing.T, opts UpstreamOptions) (*AuthServer, *Upstream, *dpopKey, string) {
	t.Helper()
	as := startDPoPAS(t, AuthServerOptions{})
	opts.AuthServer = as
	up, err := StartUpstream(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	k := newDPoPKey(t)
	ans := postDPoP(t, as, cc("", up.Resource()), k.proof(t, proofSpec{htm: "POST", htu: as.TokenURL()}))
	if ans.status != 200 {
		t.Fatalf("token: %d %s", ans.status, ans.raw)
	}
	return as, up, k, ans.str("access_token")
}

func callDPoP(t *testing.T, method, target, auth string, proofs ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, target, nil)
	req.Header.Set("Authorization", auth)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestDPoPUpstream(t *testing.T) {
	as, up, k, at := startDPoPUpstream(t, UpstreamOptions{})
	other := newDPoPKey(t)
	target := up.URL() + "/echo"
	good := proofSpec{htm: "GET", htu: target, token: at}
	with := func(key *dpopKey, f func(*proofSpec)) string {
		s := good
		f(&s)
		return key.proof(t, s)
	}
	if resp := callDPoP(t, "GET", target+"?q=1", "DPoP "+at, with(k, func(*proofSpec) {})); resp.StatusCode != 200 {
		t.Fatalf("good proof: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	replayed := with(k, func(s *proofSpec) { s.jti = "once" })
	if resp := callDPoP(t, "GET", target, "DPoP "+at, replayed); resp.StatusCode != 200 {
		t.Fatalf("first use: %d", resp.StatusCode)
	}
	for _, tc := range []struct {
		name, auth, want string
		proofs           []string
	}{
		{"as Bearer", "Bearer " + at, `error="invalid_token"`, []string{with(k, func(*proofSpec) {})}},
		{"no proof", "DPoP " + at, "no DPoP proof", nil},
		{"replay", "DPoP " + at, "jti was already used", []string{replayed}},
		{"other key", "DPoP " + at, "bound to", []string{with(other, func(*proofSpec) {})}},
		{"ath", "DPoP " + at, "ath", []string{with(k, func(s *proofSpec) { s.token = "at_other" })}},
		{"no ath", "DPoP " + at, "ath", []string{with(k, func(s *proofSpec) { s.token = "" })}},
		{"htm", "DPoP " + at, "htm", []string{with(k, func(s *proofSpec) { s.htm = "POST" })}},
		{"htu path", "DPoP " + at, "htu", []string{with(k, func(s *proofSpec) { s.htu = up.URL() + "/mcp" })}},
		{"htu query", "DPoP " + at, "htu", []string{with(k, func(s *proofSpec) { s.htu = target + "?q=1" })}},
		{"iat", "DPoP " + at, "iat", []string{with(k, func(s *proofSpec) { s.iat = time.Now().Add(-90 * time.Second) })}},
		{"typ", "DPoP " + at, "typ", []string{with(k, func(s *proofSpec) { s.typ = "jwt" })}},
		{"signature", "DPoP " + at, "signature", []string{with(k, func(s *proofSpec) { s.jwk = jose.JSONWebKey{Key: &other.priv.PublicKey} })}},
	} {
		resp := callDPoP(t, "GET", target, tc.auth, tc.proofs...)
		wa := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.HasPrefix(wa, "DPoP ") || !strings.Contains(wa, tc.want) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, wa)
		}
		if tc.name != "as Bearer" && !strings.Contains(wa, `error="invalid_dpop_proof"`) {
			t.Errorf("%s: %s", tc.name, wa)
		}
	}
	v, distinct, failures := up.DPoPStats()
	if v != 2 || len(failures) != 12 {
		t.Fatalf("stats %d %d %v", v, distinct, failures)
	}
	// Accepted ones, the replay's original, and the ones signed right
	// but refused for a claim (other key, ath x2, htm, htu x2, iat).
	if distinct != 9 {
		t.Fatalf("distinct jti %d", distinct)
	}
	// Unbound tokens keep working as Bearer, and only as Bearer.
	plain := as.IssueAccessToken("c1", nil, up.Resource())
	if resp := callDPoP(t, "GET", target, "Bearer "+plain); resp.StatusCode != 200 {
		t.Fatalf("unbound bearer: %d", resp.StatusCode)
	}
	if resp := callDPoP(t, "GET", target, "DPoP "+plain, with(k, func(s *proofSpec) { s.token = plain })); resp.StatusCode != 401 {
		t.Fatalf("unbound with DPoP scheme: %d", resp.StatusCode)
	}
}

func TestDPoPUpstreamNonce(t *testing.T) {
	_, up, k, at := startDPoPUpstream(t, UpstreamOptions{DPoPNonce: true})
	target := up.URL() + "/mcp"
	proof := func(nonce string) string {
		return k.proof(t, proofSpec{htm: "GET", htu: target, token: at, nonce: nonce})
	}
	resp := callDPoP(t, "GET", target, "DPoP "+at, proof(""))
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `DPoP error="use_dpop_nonce"`) || nonce == "" {
		t.Fatalf("%d %q nonce %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), nonce)
	}
	// /mcp answers GET with 405 once authorized: past the DPoP check.
	resp = callDPoP(t, "GET", target, "DPoP "+at, proof(nonce))
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("DPoP-Nonce") != nonce {
		t.Fatalf("with nonce: %d", resp.StatusCode)
	}
	up.RotateDPoPNonce()
	resp = callDPoP(t, "GET", target, "DPoP "+at, proof(nonce))
	if next := resp.Header.Get("DPoP-Nonce"); resp.StatusCode != 401 || next == nonce || next == "" {
		t.Fatalf("after rotation: %d", resp.StatusCode)
	}
	if v, distinct, f := up.DPoPStats(); v != 1 || distinct != 3 || len(f) != 0 {
		t.Fatalf("stats %d %d %v", v, distinct, f)
	}
}
