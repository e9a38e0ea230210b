package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
)

// ProtectedResourceMetadata is an RFC 9728 §2 document.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	JWKSURI                string   `json:"jwks_uri,omitempty"`
}

// AuthServerMetadata is an RFC 8414 §2 (or OpenID Provider) document.
type AuthServerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                     string   `json:"token_endpoint,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint,omitempty"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	JWKSURI                           string   `json:"jwks_uri,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported,omitempty"`
	DPoPSigningAlgValuesSupported     []string `json:"dpop_signing_alg_values_supported,omitempty"`
	// AuthorizationResponseIssParameterSupported (RFC 9207): the server
	// sends iss in authorization responses, so a missing one is an error.
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// ClientIDMetadataDocumentSupported: the server accepts an https URL
	// serving a client metadata document as client_id (CIMD).
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported,omitempty"`
}

// AuthMethods returns the token endpoint authentication methods, with the
// RFC 8414 §2 default (client_secret_basic) when the document names none.
func (m *AuthServerMetadata) AuthMethods() []string {
	if len(m.TokenEndpointAuthMethodsSupported) == 0 {
		return []string{"client_secret_basic"}
	}
	return m.TokenEndpointAuthMethodsSupported
}

// SupportsPKCE reports S256 support; absent means no PKCE (RFC 8414 §2).
func (m *AuthServerMetadata) SupportsPKCE() bool {
	return slices.Contains(m.CodeChallengeMethodsSupported, "S256")
}

var errNotObject = errors.New("not a JSON object")

// DecodeProtectedResourceMetadata parses and checks an RFC 9728 document.
// It returns a fully valid document or an error, never half of one.
func DecodeProtectedResourceMetadata(body []byte) (*ProtectedResourceMetadata, error) {
	var m ProtectedResourceMetadata
	if err := decodeObject(body, &m); err != nil {
		return nil, fmt.Errorf("discovery: protected resource metadata: %w", err)
	}
	if err := absoluteURL("resource", m.Resource, true); err != nil {
		return nil, fmt.Errorf("discovery: protected resource metadata: %w", err)
	}
	for _, as := range m.AuthorizationServers {
		if err := absoluteURL("authorization_servers", as, true); err != nil {
			return nil, fmt.Errorf("discovery: protected resource metadata: %w", err)
		}
	}
	if m.JWKSURI != "" {
		if err := absoluteURL("jwks_uri", m.JWKSURI, true); err != nil {
			return nil, fmt.Errorf("discovery: protected resource metadata: %w", err)
		}
	}
	return &m, nil
}

// DecodeAuthServerMetadata parses and checks an RFC 8414 document. The
// issuer and every endpoint must be absolute URLs; a token endpoint is
// required (the gateway has no use for a server without one).
func DecodeAuthServerMetadata(body []byte) (*AuthServerMetadata, error) {
	var m AuthServerMetadata
	if err := decodeObject(body, &m); err != nil {
		return nil, fmt.Errorf("discovery: authorization server metadata: %w", err)
	}
	checks := []struct {
		name, val string
		required  bool
	}{
		{"issuer", m.Issuer, true},
		{"token_endpoint", m.TokenEndpoint, true},
		{"authorization_endpoint", m.AuthorizationEndpoint, false},
		{"revocation_endpoint", m.RevocationEndpoint, false},
		{"introspection_endpoint", m.IntrospectionEndpoint, false},
		{"registration_endpoint", m.RegistrationEndpoint, false},
		{"jwks_uri", m.JWKSURI, false},
	}
	for _, c := range checks {
		if err := absoluteURL(c.name, c.val, c.required); err != nil {
			return nil, fmt.Errorf("discovery: authorization server metadata: %w", err)
		}
	}
	if u, _ := url.Parse(m.Issuer); u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("discovery: authorization server metadata: issuer %q has a query or fragment", m.Issuer)
	}
	return &m, nil
}

func decodeObject(body []byte, v any) error {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	return json.Unmarshal(b, v)
}

func absoluteURL(name, val string, required bool) error {
	if val == "" {
		if required {
			return fmt.Errorf("%s is missing", name)
		}
		return nil
	}
	u, err := url.Parse(val)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%s %q is not an absolute http(s) URL", name, val)
	}
	return nil
}
