// Package benchflow gives the benchmark programs (loadbench, costcurve)
// their per-user credentials: user names, and the authorization-code
// flow through a gateway in front of the fake authorization server
// (start, the user's decision, the callback), with the user named in an
// X-User header the gateway's principal reads.
package benchflow

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// UserNames returns n user names.
func UserNames(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("user%06d", i)
	}
	return users
}

// noRedirects keeps connections (the flow makes three requests per user,
// hundreds of thousands in a large run: new connections would exhaust the
// loopback's ephemeral ports in TIME_WAIT).
var noRedirects = &http.Client{
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// AuthorizeUsers runs the authorization-code flow for every user through
// the gateway at base (scheme://host:port): start, the user's decision at
// the authorization server, the callback.
func AuthorizeUsers(base string, users []string, workers int) error {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(users) || firstErr.Load() != nil {
					return
				}
				if err := authorizeUser(base, users[i]); err != nil {
					firstErr.Store(fmt.Errorf("%s: %w", users[i], err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return nil
}

func authorizeUser(base, user string) error {
	loc, err := redirectOf(http.MethodGet, base+"/.oauth/start", user, nil)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	authURL, err := url.Parse(loc)
	if err != nil {
		return err
	}
	form := authURL.Query()
	form.Set("user", user)
	decide := *authURL
	decide.Path += "/decide"
	decide.RawQuery = ""
	callback, err := redirectOf(http.MethodPost, decide.String(), "", form)
	if err != nil {
		return fmt.Errorf("decision: %w", err)
	}
	req, _ := http.NewRequest(http.MethodGet, callback, nil)
	req.Header.Set("X-User", user)
	resp, err := noRedirects.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback: %d", resp.StatusCode)
	}
	return nil
}

func redirectOf(method, u, user string, form url.Values) (string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.Header.Set("X-User", user)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		return loc, nil
	}
	return "", errors.New("no Location")
}
