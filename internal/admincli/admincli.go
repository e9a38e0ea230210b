// Package admincli is the `caddy oauth-gateway` command's client of the
// gateway's admin API (gateway.Admin): it lists, authorizes, refreshes
// and revokes credentials. The admin API never returns a token or
// secret, so neither can it. The Caddy adapter wires it to Caddy's CLI
// and admin address.
package admincli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// Client talks to one admin API.
type Client struct {
	// Do makes a request to the admin API (path like
	// /oauth_gateway/credentials) and returns a response whose status is
	// 2xx, or an error carrying the API's message.
	Do func(method, path string) (*http.Response, error)
	// Out receives what the command prints.
	Out io.Writer
}

// Refresh obtains a new token for the credential named by target now.
func (c Client) Refresh(target string) error {
	cred, err := c.find(target)
	if err != nil {
		return err
	}
	var st tokenstore.Status
	if err := c.json(http.MethodPost, "/oauth_gateway/credentials/"+url.PathEscape(cred.ID)+"/refresh", &st); err != nil {
		return fmt.Errorf("refreshing %s: %v", cred.ID, err)
	}
	fmt.Fprintf(c.Out, "%s: %s, generation %d, expires %s\n", st.ID, st.State, st.Generation, expiry(st))
	return nil
}

// Revoke revokes the credential's tokens at its authorization server and
// forgets them; with forget it only forgets them (no revocation).
func (c Client) Revoke(target string, forget bool) error {
	cred, err := c.find(target)
	if err != nil {
		return err
	}
	path := "/oauth_gateway/credentials/" + url.PathEscape(cred.ID) + "/revoke"
	if forget {
		path += "?forget=true"
	}
	var res struct {
		tokenstore.Status
		Revocation *tokenstore.RevokeResult `json:"revocation"`
	}
	if err := c.json(http.MethodPost, path, &res); err != nil {
		return fmt.Errorf("revoking %s: %v", cred.ID, err)
	}
	switch {
	case forget:
		fmt.Fprintf(c.Out, "%s: tokens forgotten (nothing revoked at the server)\n", cred.ID)
	case res.Revocation != nil:
		fmt.Fprintf(c.Out, "%s: refresh token revoked: %v, access token revoked: %v; tokens forgotten\n", cred.ID,
			res.Revocation.RefreshTokenRevoked, res.Revocation.AccessTokenRevoked)
		if res.Revocation.Warning != "" {
			fmt.Fprintf(c.Out, "warning: %s\n", cell(res.Revocation.Warning))
		}
	}
	return nil
}

// find is the credential with id target, or the only one whose resource
// is target.
func (c Client) find(target string) (tokenstore.Status, error) {
	list, err := c.list()
	if err != nil {
		return tokenstore.Status{}, err
	}
	var found []tokenstore.Status
	for _, s := range list {
		if s.ID == target {
			return s, nil
		}
		if sameResource(s.Resource, target) {
			found = append(found, s)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	if len(found) == 0 {
		return tokenstore.Status{}, fmt.Errorf("no credential with id or resource %q (see 'caddy oauth-gateway status')", target)
	}
	return tokenstore.Status{}, fmt.Errorf("%d credentials have resource %q; name one by its id (see 'caddy oauth-gateway status')", len(found), target)
}

func expiry(s tokenstore.Status) string {
	if s.Expiry.IsZero() {
		return "-"
	}
	return s.Expiry.Local().Format(time.RFC3339)
}

// Status prints the credentials as a table.
func (c Client) Status() error {
	out := c.Out
	list, err := c.list()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRESOURCE\tPRINCIPAL\tGRANT\tSTATE\tEXPIRY\tLAST ERROR")
	for _, s := range list {
		expiry := ""
		if !s.Expiry.IsZero() {
			expiry = s.Expiry.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(s.ID), cell(s.Resource), cell(s.Principal),
			cell(s.Grant), cell(string(s.State)), cell(expiry), cell(s.LastError))
	}
	return tw.Flush()
}

// cell makes a table cell of s: "-" when empty, control characters
// (which would break the table) as spaces.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Authorize starts the authorization of the credential named by target
// (an id, or the resource of a shared authorization_code credential),
// prints its URL and waits for the "authorized" change event.
func (c Client) Authorize(target string, timeout time.Duration) error {
	out := c.Out
	list, err := c.list()
	if err != nil {
		return err
	}
	cred, err := pickCredential(list, target)
	if err != nil {
		return err
	}
	// Subscribe before starting, so the completion cannot be missed.
	events, err := c.Do(http.MethodGet, "/oauth_gateway/events")
	if err != nil {
		return fmt.Errorf("subscribing to credential events: %v", err)
	}
	defer events.Body.Close()
	done := make(chan error, 1)
	go func() { done <- waitAuthorized(events.Body, cred.ID) }()

	var started struct {
		ID               string `json:"id"`
		AuthorizationURL string `json:"authorization_url"`
	}
	if err := c.json(http.MethodPost, "/oauth_gateway/credentials/"+url.PathEscape(cred.ID)+"/authorize", &started); err != nil {
		return fmt.Errorf("starting the authorization of %s: %v", cred.ID, err)
	}
	if started.AuthorizationURL == "" {
		return fmt.Errorf("starting the authorization of %s: no authorization_url in the answer", cred.ID)
	}
	fmt.Fprintf(out, "To authorize %s (%s), open this URL in a browser and sign in:\n\n%s\n\n", cred.ID, cred.Resource, started.AuthorizationURL)
	fmt.Fprintf(out, "Waiting up to %s for the authorization to complete...\n", timeout)

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "connected")
		return nil
	case <-timer.C:
		return fmt.Errorf("the authorization of %s did not complete within %s; run the command again for a new URL", cred.ID, timeout)
	}
}

// pickCredential finds the credential with id target, else the one
// shared authorization_code credential whose resource is target.
func pickCredential(list []tokenstore.Status, target string) (tokenstore.Status, error) {
	for _, s := range list {
		if s.ID == target {
			return s, nil
		}
	}
	var found []tokenstore.Status
	seen := map[string]bool{}
	for _, s := range list {
		if s.Grant == "authorization_code" && s.Principal == "" && sameResource(s.Resource, target) && !seen[s.ID] {
			seen[s.ID] = true
			found = append(found, s)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return tokenstore.Status{}, fmt.Errorf("no credential with id %q, nor a shared authorization_code credential for that resource (see 'caddy oauth-gateway status')", target)
	}
	ids := make([]string, len(found))
	for i, s := range found {
		ids[i] = s.ID
	}
	return tokenstore.Status{}, fmt.Errorf("%d shared authorization_code credentials have resource %q (%s); name one by its id", len(found), target, strings.Join(ids, ", "))
}

func sameResource(a, b string) bool {
	return a != "" && strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// waitAuthorized reads the server-sent events until a change of kind
// "authorized" for id.
func waitAuthorized(stream io.Reader, id string) error {
	sc := bufio.NewScanner(stream)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "change" {
				var ev tokenstore.Event
				if json.Unmarshal([]byte(data), &ev) == nil && ev.ID == id && ev.Kind == "authorized" {
					return nil
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, ":"): // comment (keepalive)
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading credential events: %v", err)
	}
	return errors.New("the admin API closed the event stream before the authorization completed")
}

// list fetches the credentials' redacted status.
func (c Client) list() ([]tokenstore.Status, error) {
	var list []tokenstore.Status
	if err := c.json(http.MethodGet, "/oauth_gateway/credentials", &list); err != nil {
		return nil, fmt.Errorf("listing credentials: %v", err)
	}
	return list, nil
}

// json makes an admin API request and decodes its JSON answer.
func (c Client) json(method, path string, out any) error {
	resp, err := c.Do(method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %v", method, path, err)
	}
	return nil
}
