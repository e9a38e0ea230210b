package gateway

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxAssertionFile bounds what is read from assertion_file.
const maxAssertionFile = 64 << 10

// readAssertion reads the jwt_bearer grant's assertion from path, fresh
// for every token request: platforms rotate projected tokens in place
// (Kubernetes writes a new service-account token well before the old one
// expires). A missing, empty or expired assertion is a configuration
// fault the store retries slowly, with a message naming the file, never
// the assertion.
func readAssertion(path string, now time.Time) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", &configError{msg: fmt.Sprintf("assertion_file: %v", err), hint: "the workload's assertion file cannot be read"}
	}
	if fi.Size() > maxAssertionFile {
		return "", &configError{msg: fmt.Sprintf("assertion_file: %s is %d bytes, more than %d", path, fi.Size(), maxAssertionFile),
			hint: "the workload's assertion file is too large"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &configError{msg: fmt.Sprintf("assertion_file: %v", err), hint: "the workload's assertion file cannot be read"}
	}
	assertion := strings.TrimSpace(string(b))
	if assertion == "" {
		return "", &configError{msg: fmt.Sprintf("assertion_file: %s is empty", path), hint: "the workload's assertion file is empty"}
	}
	// Only the expiry is read here (unverified: the authorization server
	// verifies); an expired assertion would only earn an invalid_grant.
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256,
		jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA})
	if err != nil {
		return "", &configError{msg: fmt.Sprintf("assertion_file: %s does not hold a signed JWT", path), hint: "the workload's assertion is not a signed JWT"}
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return "", &configError{msg: fmt.Sprintf("assertion_file: %s: %v", path, err), hint: "the workload's assertion cannot be decoded"}
	}
	if claims.Expiry != nil && !now.Before(claims.Expiry.Time()) {
		return "", &configError{msg: fmt.Sprintf("assertion_file: the assertion in %s expired at %s; the platform should have rotated it",
			path, claims.Expiry.Time().UTC().Format(time.RFC3339)), hint: "the workload's assertion expired"}
	}
	return assertion, nil
}
