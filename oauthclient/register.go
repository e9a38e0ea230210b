package oauthclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/normalize"
	"github.com/oauthgw/caddy-oauth-gateway/redact"
)

// Dynamic client registration (RFC 7591). The same metadata type serves
// Client ID Metadata Documents, where ClientID is the document's own URL.

// registrationEndpoint names the endpoint in error messages.
const registrationEndpoint = "registration endpoint"

// ClientMetadata is the client metadata of an RFC 7591 §2 registration
// request (or of a Client ID Metadata Document).
type ClientMetadata struct {
	ClientID                string   `json:"client_id,omitempty"` // CIMD: the document's own URL
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	JWKSURI                 string   `json:"jwks_uri,omitempty"`
	// ApplicationType is OpenID Connect Dynamic Client Registration's
	// application_type, which MCP 2026-07-28 (SEP-837) asks clients to
	// state: "web" for a client whose redirect URIs are https, "native"
	// for loopback ones (ApplicationTypeFor).
	ApplicationType string `json:"application_type,omitempty"`
}

// ApplicationTypeFor is the application_type of a client with these
// redirect URIs: "native" only when every one is a loopback http URI
// (127.0.0.1, [::1] or localhost: a program on the user's machine), else
// "web" (OpenID Connect Registration §2; SEP-837).
func ApplicationTypeFor(redirectURIs []string) string {
	if len(redirectURIs) == 0 {
		return "web"
	}
	for _, raw := range redirectURIs {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" {
			return "web"
		}
		switch host := u.Hostname(); {
		case host == "localhost":
		case net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback():
		default:
			return "web"
		}
	}
	return "native"
}

// RegisteredClient is an RFC 7591 §3.2.1 client information response.
// ClientSecret and RegistrationAccessToken are secrets.
type RegisteredClient struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at,omitempty"`
	ClientSecretExpiresAt   int64  `json:"client_secret_expires_at,omitempty"` // 0: never
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri,omitempty"`
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
}

// Register POSTs md as JSON to endpoint (Content-Type and Accept
// application/json; Authorization: Bearer initialAccessToken when
// non-empty), with the client's timeout and body limit and no redirects
// (same HTTP client rules as Token). A 201 or 200 with a client_id is
// success.
//
// Errors: *Error (with the RFC 7591 §3.2.2 error and description,
// scrubbed of any secret) for an error answer, *TransportError when there
// was none. Classify: 5xx/429 transient (like token errors), 4xx
// permanent. The RFC 7591 code (invalid_redirect_uri,
// invalid_client_metadata, ...) is kept as Err.Code; an answer that is
// not a registration error (HTML, no client_id) is server_error, or
// invalid_token for a bare 401 (the initial access token).
func (c *Client) Register(ctx context.Context, endpoint string, md ClientMetadata, initialAccessToken string) (*RegisteredClient, error) {
	if md.RedirectURIs == nil {
		md.RedirectURIs = []string{} // an array, not null, for strict servers
	}
	payload, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("oauthclient: encoding client metadata: %w", err)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("oauthclient: building registration request: %w", err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	if c.UserAgent != "" {
		r.Header.Set("User-Agent", c.UserAgent)
	}
	if initialAccessToken != "" {
		r.Header.Set("Authorization", "Bearer "+initialAccessToken)
	}
	status, header, body, err := c.do(r)
	if err != nil {
		var te *TransportError
		if errors.As(err, &te) {
			te.kind = registrationEndpoint
		}
		return nil, err
	}
	rc, rerr, secrets := registrationResponse(status, header, body)
	if rerr != nil {
		// Server text reaches logs: strip the initial access token and
		// any credential the error answer itself carried.
		scrubError(rerr, Credentials{}, append(secrets, initialAccessToken)...)
		return nil, &Error{Endpoint: redact.URL(endpoint), Err: rerr, kind: registrationEndpoint}
	}
	return rc, nil
}

// Expired reports whether ClientSecretExpiresAt has passed at now (0
// never expires). The secret is expired from that second on.
func (rc *RegisteredClient) Expired(now time.Time) bool {
	if rc == nil || rc.ClientSecretExpiresAt == 0 {
		return false
	}
	return !now.Before(time.Unix(rc.ClientSecretExpiresAt, 0))
}

// secretMembers are response members that hold credentials: never kept
// in Extensions, and scrubbed from the rest of an error answer.
var secretMembers = []string{"client_secret", "registration_access_token", "access_token", "refresh_token", "id_token"}

// registrationResponse classifies a registration endpoint answer. Exactly
// one of rc and e is non-nil; secrets are credentials found in an error
// answer, for scrubbing.
func registrationResponse(status int, header http.Header, body []byte) (rc *RegisteredClient, e *normalize.Error, secrets []string) {
	retryAfter := normalize.ParseRetryAfter(header.Get("Retry-After"), time.Now())
	fields, isJSON := decodeObject(body)
	if raw, ok := fields["error"]; ok && raw != nil {
		e = &normalize.Error{Status: status, RetryAfter: retryAfter, Extensions: map[string]any{}}
		e.Code, _ = raw.(string)
		if e.Code == "" {
			e.Code = "server_error"
		}
		e.Description, _ = fields["error_description"].(string)
		e.URI, _ = fields["error_uri"].(string)
		for k, v := range fields {
			switch k {
			case "error", "error_description", "error_uri":
				continue
			}
			if isSecretMember(k) {
				if s, ok := v.(string); ok {
					secrets = append(secrets, s)
				}
				continue
			}
			e.Extensions[k] = v
		}
		if len(e.Extensions) == 0 {
			e.Extensions = nil
		}
		e.Class = registrationClass(status, e.Code)
		return nil, e, secrets
	}
	if status == http.StatusCreated || status == http.StatusOK {
		if id, _ := fields["client_id"].(string); id != "" {
			return registeredClient(fields), nil, nil
		}
	}
	// Not a registration error, and not a client.
	e = &normalize.Error{Status: status, RetryAfter: retryAfter}
	switch {
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
		e.Code = "temporarily_unavailable"
	case status >= 500:
		e.Code = "server_error"
	case status == http.StatusUnauthorized:
		e.Code = "invalid_token" // RFC 7591 §3: the initial access token (RFC 6750)
	case status >= 400:
		e.Code = "invalid_request"
	default:
		e.Code = "server_error"
	}
	switch {
	case !isJSON:
		e.Description = fmt.Sprintf("non-OAuth response from the registration endpoint (HTTP %d, %s)", status, contentType(header))
	case status == http.StatusCreated || status == http.StatusOK:
		e.Description = "registration response without client_id"
	default:
		e.Description = fmt.Sprintf("HTTP %d without a registration error", status)
	}
	e.Class = registrationClass(status, e.Code)
	return nil, e, nil
}

// registrationClass: 5xx and 429 are transient, any other 4xx permanent
// (the registration was refused). An error member in a 2xx is permanent
// unless its code says to retry; 1xx and 3xx carry no judgement.
func registrationClass(status int, code string) normalize.Class {
	switch {
	case status >= 500 || status == http.StatusTooManyRequests:
		return normalize.Transient
	case status >= 400:
		return normalize.Permanent
	case status >= 200 && status <= 299 && code != "server_error" && code != "temporarily_unavailable":
		return normalize.Permanent
	}
	return normalize.Transient
}

func isSecretMember(k string) bool {
	for _, s := range secretMembers {
		if k == s {
			return true
		}
	}
	return false
}

// decodeObject decodes a JSON object, keeping numbers exact. isJSON is
// false for anything else (HTML, text, arrays).
func decodeObject(body []byte) (fields map[string]any, isJSON bool) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return nil, false
	}
	return fields, true
}

// registeredClient reads the §3.2.1 members, leniently for numbers (some
// servers send numeric strings or floats).
func registeredClient(f map[string]any) *RegisteredClient {
	rc := &RegisteredClient{}
	rc.ClientID, _ = f["client_id"].(string)
	rc.ClientSecret, _ = f["client_secret"].(string)
	rc.RegistrationAccessToken, _ = f["registration_access_token"].(string)
	rc.RegistrationClientURI, _ = f["registration_client_uri"].(string)
	rc.TokenEndpointAuthMethod, _ = f["token_endpoint_auth_method"].(string)
	rc.ClientIDIssuedAt = jsonInt(f["client_id_issued_at"])
	rc.ClientSecretExpiresAt = jsonInt(f["client_secret_expires_at"])
	return rc
}

// jsonInt reads a non-negative integer from a json.Number or a numeric
// string; anything else is 0.
func jsonInt(v any) int64 {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1<<62 {
		return int64(f)
	}
	return 0
}

// contentType is the media type of h, for messages.
func contentType(h http.Header) string {
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "" {
		return mt
	}
	return "no content type"
}
