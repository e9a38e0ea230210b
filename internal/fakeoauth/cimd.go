package fakeoauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// cimdLimit bounds a Client ID Metadata Document.
const cimdLimit = 64 << 10

var cimdHTTP = &http.Client{
	Timeout: 5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // the document lives at its client_id
	},
}

// CIMDFetches counts Client ID Metadata Document fetches, failed ones included.
func (a *AuthServer) CIMDFetches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cimdFetches
}

// isCIMD reports whether id is a Client ID Metadata Document URL (http
// is allowed: tests run on loopback).
func (a *AuthServer) isCIMD(id string) bool {
	if !a.opts.CIMD {
		return false
	}
	u, err := url.Parse(id)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// cimdIfMissing fetches id's document unless it is cached. Errors leave
// the client unknown.
func (a *AuthServer) cimdIfMissing(ctx context.Context, id string) {
	if !a.isCIMD(id) {
		return
	}
	a.mu.Lock()
	_, ok := a.clients[id]
	a.mu.Unlock()
	if !ok {
		_ = a.fetchCIMD(ctx, id)
	}
}

// fetchCIMD fetches and checks the document at id and caches the client
// it describes; on failure it forgets any cached one. The error names
// the problem for the error page. The caller must not hold a.mu.
func (a *AuthServer) fetchCIMD(ctx context.Context, id string) error {
	a.mu.Lock()
	a.cimdFetches++
	a.mu.Unlock()
	c, err := getCIMD(ctx, id)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if old := a.clients[id]; old != nil && old.cimd {
			delete(a.clients, id)
		}
		return err
	}
	a.clients[id] = c
	return nil
}

func getCIMD(ctx context.Context, id string) (*client, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, fmt.Errorf("client_id %s is not a fetchable URL", id)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := cimdHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the client metadata document %s could not be fetched: %v", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the client metadata document %s answered HTTP %d", id, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cimdLimit+1))
	if err != nil {
		return nil, fmt.Errorf("the client metadata document %s could not be read: %v", id, err)
	}
	if len(body) > cimdLimit {
		return nil, fmt.Errorf("the client metadata document %s is larger than 64 KiB", id)
	}
	var doc struct {
		ClientID                string   `json:"client_id"`
		ClientName              string   `json:"client_name"`
		RedirectURIs            []string `json:"redirect_uris"`
		TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("the client metadata document %s is not a JSON object", id)
	}
	if doc.ClientID != id {
		return nil, fmt.Errorf("the client metadata document's client_id %q does not match its URL %s", doc.ClientID, id)
	}
	if len(doc.RedirectURIs) == 0 {
		return nil, fmt.Errorf("the client metadata document %s lists no redirect_uris", id)
	}
	method := doc.TokenEndpointAuthMethod
	return &client{
		public:       method == "" || method == methodNone,
		redirectURIs: slices.Clone(doc.RedirectURIs),
		name:         doc.ClientName,
		cimd:         true,
	}, nil
}
