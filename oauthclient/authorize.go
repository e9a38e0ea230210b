package oauthclient

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The authorization code grant's front channel: the authorization request
// (RFC 6749 §4.1.1 with PKCE, RFC 7636 §4.3, and RFC 8707 `resource`) and
// the redirect that answers it (RFC 6749 §4.1.2, RFC 9207 `iss`).

// AuthorizationRequest is an authorization request (RFC 6749 §4.1.1) with
// PKCE S256 (RFC 7636) and an optional RFC 8707 resource indicator.
type AuthorizationRequest struct {
	Endpoint      string     // authorization_endpoint
	ClientID      string     // client_id
	RedirectURI   string     // sent exactly as given
	State         string     // state, compared by the caller on the redirect
	CodeChallenge string     // S256
	Scopes        []string   // joined with spaces; omitted when empty
	Resource      string     // RFC 8707; omitted when empty
	Extra         url.Values // e.g. access_type=offline, prompt=consent; must not override the parameters above
}

// reservedAuthorizationParams are the parameters URL sets from the
// fields; Extra cannot set or replace them.
var reservedAuthorizationParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true, "state": true,
	"code_challenge": true, "code_challenge_method": true, "scope": true, "resource": true,
}

// URL builds the authorization URL: Endpoint plus response_type=code,
// client_id, redirect_uri, state, code_challenge,
// code_challenge_method=S256, scope, resource, extra; keeps any query
// Endpoint already has. Errors when Endpoint is not an absolute http(s)
// URL or a required field is empty.
//
// Parameters named in the struct always win: Extra members with those
// names are dropped, as are the same names in Endpoint's own query. Other
// Extra members replace Endpoint query parameters of the same name.
func (r AuthorizationRequest) URL() (string, error) {
	u, err := url.Parse(r.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("oauthclient: authorization endpoint is not an absolute http(s) URL")
	}
	if u.Fragment != "" || strings.Contains(r.Endpoint, "#") {
		// RFC 6749 §3.1: the endpoint URI MUST NOT include a fragment.
		return "", errors.New("oauthclient: authorization endpoint has a fragment")
	}
	for _, f := range []struct{ name, value string }{
		{"client_id", r.ClientID}, {"redirect_uri", r.RedirectURI},
		{"state", r.State}, {"code_challenge", r.CodeChallenge},
	} {
		if f.value == "" {
			return "", fmt.Errorf("oauthclient: authorization request without %s", f.name)
		}
	}
	q := u.Query()
	for k := range reservedAuthorizationParams {
		q.Del(k)
	}
	for k, vs := range r.Extra {
		if reservedAuthorizationParams[k] || len(vs) == 0 {
			continue
		}
		q[k] = append([]string(nil), vs...)
	}
	q.Set("response_type", "code")
	q.Set("client_id", r.ClientID)
	q.Set("redirect_uri", r.RedirectURI)
	q.Set("state", r.State)
	q.Set("code_challenge", r.CodeChallenge)
	q.Set("code_challenge_method", "S256")
	if len(r.Scopes) > 0 {
		q.Set("scope", strings.Join(r.Scopes, " "))
	}
	if r.Resource != "" {
		q.Set("resource", r.Resource)
	}
	u.RawQuery = q.Encode()
	u.ForceQuery = false
	return u.String(), nil
}

// AuthorizationResponse is the query of the redirect that answers an
// authorization request: a code (RFC 6749 §4.1.2) or an error (§4.1.2.1).
type AuthorizationResponse struct {
	Code, State, Issuer               string // Issuer is the RFC 9207 `iss` parameter ("" when absent)
	Error, ErrorDescription, ErrorURI string // the §4.1.2.1 error; Error is "" on success
}

// maxAuthorizationParam bounds each authorization response parameter.
const maxAuthorizationParam = 4096

// ParseAuthorizationResponse reads a redirect's query. Values are bounded
// (each at most 4096 bytes; longer ones are an error).
//
// An error answer (an `error` parameter) is returned without a Go error:
// the caller reads resp.Error. The Go error is for a malformed redirect:
// neither code nor error, a parameter given twice (RFC 6749 §3.1), a
// control character in a value, or an empty `iss`. Error messages name
// parameters, never their values (a code is a credential).
func ParseAuthorizationResponse(q url.Values) (AuthorizationResponse, error) {
	var resp AuthorizationResponse
	for _, p := range []struct {
		name string
		dst  *string
	}{
		{"code", &resp.Code}, {"state", &resp.State}, {"iss", &resp.Issuer},
		{"error", &resp.Error}, {"error_description", &resp.ErrorDescription}, {"error_uri", &resp.ErrorURI},
	} {
		vs, ok := q[p.name]
		if !ok {
			continue
		}
		if len(vs) != 1 {
			return AuthorizationResponse{}, fmt.Errorf("oauthclient: authorization response has %d %s parameters", len(vs), p.name)
		}
		v := vs[0]
		if len(v) > maxAuthorizationParam {
			return AuthorizationResponse{}, fmt.Errorf("oauthclient: authorization response %s is over %d bytes", p.name, maxAuthorizationParam)
		}
		if hasControl(v) {
			return AuthorizationResponse{}, fmt.Errorf("oauthclient: authorization response %s has a control character", p.name)
		}
		*p.dst = v
	}
	if _, ok := q["iss"]; ok && resp.Issuer == "" {
		// Issuer "" must mean absent, or CheckIssuer could be bypassed.
		return AuthorizationResponse{}, errors.New("oauthclient: authorization response has an empty iss")
	}
	if resp.Code == "" && resp.Error == "" {
		return AuthorizationResponse{}, errors.New("oauthclient: authorization response has neither code nor error")
	}
	return resp, nil
}

// hasControl reports whether s has an ASCII control character (none is
// allowed in any of the parameters, RFC 6749 Appendix A).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// CheckIssuer applies RFC 9207: when iss is present it must equal
// expected exactly (no normalization); when required (the server
// advertises authorization_response_iss_parameter_supported) it must be
// present. It applies to error answers too (RFC 9207 §2).
func CheckIssuer(resp AuthorizationResponse, expected string, required bool) error {
	if resp.Issuer == "" {
		if required {
			return errors.New("oauthclient: authorization response without the iss parameter the server advertises (RFC 9207)")
		}
		return nil
	}
	if expected == "" {
		return errors.New("oauthclient: authorization response has iss but no issuer is known to compare it with")
	}
	if resp.Issuer != expected {
		// Both are public identifiers, but the answer is attacker-chosen:
		// quote it, bounded by ParseAuthorizationResponse.
		return fmt.Errorf("oauthclient: authorization response iss %q is not the expected issuer %q (RFC 9207 mix-up defence)", resp.Issuer, expected)
	}
	return nil
}
