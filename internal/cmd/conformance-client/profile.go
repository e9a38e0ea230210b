package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// scenario is what the suite tells the client command.
type scenario struct {
	name      string
	serverURL string
	upstream  *url.URL
	protocol  string         // MCP_CONFORMANCE_PROTOCOL_VERSION; "" from suites that do not set it
	ctx       map[string]any // MCP_CONFORMANCE_CONTEXT
}

// defaultProtocol is the revision used when the suite names none (0.1.x):
// its mock servers speak the stateful 2025-11-25 lifecycle.
const defaultProtocol = "2025-11-25"

func (s *scenario) protocolOrDefault() string {
	if s.protocol != "" {
		return s.protocol
	}
	return defaultProtocol
}

func loadScenario(serverURL string) (*scenario, error) {
	s := &scenario{
		name:      os.Getenv("MCP_CONFORMANCE_SCENARIO"),
		serverURL: serverURL,
		protocol:  os.Getenv("MCP_CONFORMANCE_PROTOCOL_VERSION"),
	}
	if s.name == "" {
		return nil, fmt.Errorf("MCP_CONFORMANCE_SCENARIO is not set")
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q is not an absolute http(s) URL", serverURL)
	}
	s.upstream = u
	if raw := os.Getenv("MCP_CONFORMANCE_CONTEXT"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &s.ctx); err != nil {
			return nil, fmt.Errorf("MCP_CONFORMANCE_CONTEXT: %v", err)
		}
	}
	return s, nil
}

// str returns a string member of the scenario's context.
func (s *scenario) str(key string) string {
	v, _ := s.ctx[key].(string)
	return v
}

// need returns string members of the context, or an error naming the
// first one missing.
func (s *scenario) need(keys ...string) ([]string, error) {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = s.str(k)
		if out[i] == "" {
			return nil, fmt.Errorf("scenario %s: MCP_CONFORMANCE_CONTEXT has no %q", s.name, k)
		}
	}
	return out, nil
}

// profile is how the gateway is configured for a scenario, and what the
// plain MCP client must send to Caddy.
type profile struct {
	kind string // one word for the log: passthrough, authorization_code, client_credentials, ...
	// directives are the oauth_gateway subdirectives after resource;
	// "{SITE}" is replaced by Caddy's site origin.
	directives []string
	// perUser puts basic_auth in front and names the user as the
	// principal: the MCP client authenticates to Caddy, never upstream.
	perUser  bool
	user     string
	password string
	// env holds secrets for Caddy's environment ({env.NAME} placeholders).
	env []string
	// headers are sent by the MCP client with every request to Caddy.
	headers map[string]string
}

// cimdURL is the client ID metadata document URL the suite's basic-cimd
// scenario expects as client_id (it does not fetch it). An operator names
// the public URL of the gateway's document; here it is this fixed one.
const cimdURL = "https://conformance-test.local/client-metadata.json"

// Loopback destinations the gateway may reach during discovery: the suite
// runs every mock server on localhost with its own port.
const allowHosts = "discovery_allow_hosts localhost 127.0.0.1"

// needsOwnAS reports whether the scenario's MCP server has no OAuth, so
// that the gateway is given the adapter's static authorization server.
func needsOwnAS(s *scenario) bool {
	return !strings.HasPrefix(s.name, "auth/") && os.Getenv("OAUTHGW_CONFORMANCE_PLAIN") != "discovery"
}

func profileFor(s *scenario, work string, as *staticAS) (*profile, error) {
	p := &profile{headers: map[string]string{}}
	authCode := func() {
		p.kind = "authorization_code"
		p.perUser = true
		p.user = "conformance-user"
		p.password = randomHex(16)
		p.directives = append(p.directives,
			"grant authorization_code",
			"redirect_uri {SITE}/mcp/.oauth/callback",
			"principal {http.auth.user.id}",
		)
	}
	switch s.name {
	case "auth/pre-registration":
		v, err := s.need("client_id", "client_secret")
		if err != nil {
			return nil, err
		}
		authCode()
		p.directives = append(p.directives, "client_id "+quote(v[0]), "client_secret {env.CONFORMANCE_CLIENT_SECRET}")
		p.env = append(p.env, "CONFORMANCE_CLIENT_SECRET="+v[1])

	case "auth/dpop", "auth/dpop-nonce":
		authCode()
		p.directives = append(p.directives, "client_metadata_url "+cimdURL, "dpop")

	case "auth/client-credentials-basic":
		v, err := s.need("client_id", "client_secret")
		if err != nil {
			return nil, err
		}
		p.kind = "client_credentials"
		p.directives = append(p.directives, "grant client_credentials", "client_id "+quote(v[0]),
			"client_secret {env.CONFORMANCE_CLIENT_SECRET}")
		p.env = append(p.env, "CONFORMANCE_CLIENT_SECRET="+v[1])

	case "auth/client-credentials-jwt":
		v, err := s.need("client_id", "private_key_pem")
		if err != nil {
			return nil, err
		}
		keyFile := filepath.Join(work, "client-key.pem")
		if err := os.WriteFile(keyFile, []byte(v[1]), 0o600); err != nil {
			return nil, err
		}
		p.kind = "client_credentials+private_key_jwt"
		p.directives = append(p.directives, "grant client_credentials", "client_id "+quote(v[0]),
			"client_auth private_key_jwt", "client_key "+quote(keyFile))

	case "auth/enterprise-managed-authorization", "auth/cross-app-access-complete-flow":
		v, err := s.need("client_id", "client_secret", "idp_client_id", "idp_id_token", "idp_token_endpoint")
		if err != nil {
			return nil, err
		}
		// The user's ID token reaches the gateway in a header, as
		// forward_auth's copy_headers would put it there.
		p.kind = "id_jag"
		p.directives = append(p.directives, "grant id_jag", "client_id "+quote(v[0]),
			"client_secret {env.CONFORMANCE_CLIENT_SECRET}",
			"subject_token {http.request.header.X-Id-Token}",
			"idp_token_endpoint "+quote(v[4]), "idp_client_id "+quote(v[2]))
		p.env = append(p.env, "CONFORMANCE_CLIENT_SECRET="+v[1])
		p.headers["X-Id-Token"] = v[3]

	case "auth/wif-jwt-bearer":
		v, err := s.need("client_id", "valid_jwt")
		if err != nil {
			return nil, err
		}
		assertion := filepath.Join(work, "assertion.jwt")
		if err := os.WriteFile(assertion, []byte(v[1]), 0o600); err != nil {
			return nil, err
		}
		p.kind = "jwt_bearer"
		p.directives = append(p.directives, "grant jwt_bearer", "client_id "+quote(v[0]), "assertion_file "+quote(assertion))

	default:
		if strings.HasPrefix(s.name, "auth/") {
			// A user-delegated MCP server: authorization code with a
			// per-user credential, registration by CIMD when the
			// server offers it, else dynamic registration.
			authCode()
			p.directives = append(p.directives, "client_metadata_url "+cimdURL)
			break
		}
		// A server without OAuth: these scenarios check that MCP
		// passes through the gateway intact.
		if as != nil {
			// The gateway gets its tokens from the adapter's static
			// authorization server (see staticas.go).
			p.kind = "static-issuer"
			p.directives = append(p.directives, "issuer "+as.origin, "client_id "+staticClientID,
				"client_secret {env.CONFORMANCE_CLIENT_SECRET}")
			p.env = append(p.env, "CONFORMANCE_CLIENT_SECRET="+as.secret)
			break
		}
		// OAUTHGW_CONFORMANCE_PLAIN=discovery: the gateway discovers
		// from the MCP server, finds nothing and forwards without a
		// token (its path for servers that name their authorization
		// server only in a 401 challenge).
		p.kind = "discovery-passthrough"
		p.directives = append(p.directives, "client_id "+staticClientID)
	}
	p.directives = append(p.directives, allowHosts, "insecure_allow_http")
	return p, nil
}

// quote makes a Caddyfile token of v.
func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\"'`{}#\\") {
		return v
	}
	return "`" + strings.ReplaceAll(v, "`", "") + "`"
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
