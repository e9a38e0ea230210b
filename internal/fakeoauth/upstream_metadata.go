package fakeoauth

import (
	"encoding/json"
	"net/http"
)

const wellKnownPR = "/.well-known/oauth-protected-resource"

// AdvertiseIssuer changes the authorization server the metadata names:
// an upstream that later points elsewhere (issue: pinning).
func (u *Upstream) AdvertiseIssuer(issuer string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.advertisedIssuer = issuer
}

// SetMetadataResource makes the metadata claim resource (set once the
// upstream's address is known).
func (u *Upstream) SetMetadataResource(resource string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.metadataResource = resource
}

// MetadataFetches counts protected resource metadata requests, 404s included.
func (u *Upstream) MetadataFetches() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.metadataFetches
}

// serveMetadata serves the RFC 9728 document at the path-inserted URL,
// or at the root URL with MetadataAtRoot; every other well-known path is
// a 404, so the gateway's lookup chain has to continue.
func (u *Upstream) serveMetadata(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.metadataFetches++
	issuer := u.advertisedIssuer
	u.mu.Unlock()
	if issuer == "" && u.opts.AuthServer != nil {
		issuer = u.opts.AuthServer.Issuer()
	}
	want, resource := wellKnownPR+u.opts.ResourcePath, u.Resource()
	if u.opts.MetadataAtRoot {
		want, resource = wellKnownPR, u.URL()
	}
	if u.opts.DisableMetadata || r.URL.Path != want {
		http.NotFound(w, r)
		return
	}
	if u.opts.MetadataResource != "" {
		resource = u.opts.MetadataResource
	}
	u.mu.Lock()
	if u.metadataResource != "" {
		resource = u.metadataResource
	}
	u.mu.Unlock()
	scopes := u.opts.ScopesSupported
	if scopes == nil {
		scopes = []string{"read", "write"}
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 resource,
		"authorization_servers":    []string{issuer},
		"scopes_supported":         scopes,
		"bearer_methods_supported": []string{"header"},
	})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
