package caddymodule

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

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// The `caddy oauth-gateway` command: a thin client of the admin API
// (admin.go), which never returns a token or secret, so neither can it.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth-gateway",
		Usage: "status|authorize [--address <admin address>] [--config <path> [--adapter <name>]]",
		Short: "Lists and authorizes the OAuth gateway's credentials",
		Long: `
Talks to a running Caddy's admin API (/oauth_gateway/...).

  caddy oauth-gateway status
      Lists the credentials with their state and last error.

  caddy oauth-gateway authorize <credential id | resource URL> [--timeout 10m]
      Starts the operator's authorization of a shared authorization_code
      credential, prints the URL to open in a browser and waits until the
      authorization completes.

The admin address is --address, else the one in --config (with --adapter),
else Caddy's default (localhost:2019), as for 'caddy stop'.
`,
		CobraFunc: gatewayCommand,
	})
}

// gatewayCommand adds the subcommands to the `oauth-gateway` command.
func gatewayCommand(cmd *cobra.Command) {
	cmd.Args = cobra.NoArgs
	adminFlags := func(c *cobra.Command) {
		c.Flags().String("address", "", "The address of the admin API (default: from --config, else "+caddy.DefaultAdminListen+")")
		c.Flags().StringP("config", "c", "", "Configuration file naming the admin address")
		c.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
	}
	status := &cobra.Command{
		Use:   "status [--address <admin address>]",
		Short: "Lists the credentials: id, resource, principal, grant, state, expiry, last error",
		Args:  cobra.NoArgs,
		RunE: run(func(out io.Writer, addr string, _ caddycmd.Flags) error {
			return runStatus(out, addr)
		}),
	}
	adminFlags(status)
	authorize := &cobra.Command{
		Use:   "authorize <credential id | resource URL> [--address <admin address>] [--timeout 10m]",
		Short: "Authorizes a shared authorization_code credential in a browser and waits until it is connected",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(out io.Writer, addr string, fl caddycmd.Flags) error {
			return runAuthorize(out, addr, fl.Arg(0), fl.Duration("timeout"))
		}),
	}
	adminFlags(authorize)
	authorize.Flags().Duration("timeout", 10*time.Minute, "How long to wait for the authorization to complete")
	cmd.AddCommand(status, authorize)
}

// run makes a subcommand's RunE of f, given the admin address; errors
// are reported the way Caddy's own commands report them.
func run(f func(out io.Writer, addr string, fl caddycmd.Flags) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			addr, err := adminAddress(fl)
			if err == nil {
				err = f(c.OutOrStdout(), addr, fl)
			}
			if err != nil {
				return caddy.ExitCodeFailedStartup, err
			}
			return caddy.ExitCodeSuccess, nil
		})(c, args)
	}
}

// adminAddress is the admin API address the way `caddy stop` finds it.
func adminAddress(fl caddycmd.Flags) (string, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return "", fmt.Errorf("couldn't determine admin API address: %v", err)
	}
	return addr, nil
}

// runStatus prints the credentials as a table.
func runStatus(out io.Writer, addr string) error {
	list, err := listStatus(addr)
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

// runAuthorize starts the authorization of the credential named by
// target, prints its URL and waits for the "authorized" change event.
func runAuthorize(out io.Writer, addr, target string, timeout time.Duration) error {
	list, err := listStatus(addr)
	if err != nil {
		return err
	}
	cred, err := pickCredential(list, target)
	if err != nil {
		return err
	}
	// Subscribe before starting, so the completion cannot be missed.
	events, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/oauth_gateway/events", nil, nil)
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
	if err := adminJSON(addr, http.MethodPost, "/oauth_gateway/credentials/"+url.PathEscape(cred.ID)+"/authorize", &started); err != nil {
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

// listStatus fetches the credentials' redacted status.
func listStatus(addr string) ([]tokenstore.Status, error) {
	var list []tokenstore.Status
	if err := adminJSON(addr, http.MethodGet, "/oauth_gateway/credentials", &list); err != nil {
		return nil, fmt.Errorf("listing credentials: %v", err)
	}
	return list, nil
}

// adminJSON makes an admin API request and decodes its JSON answer.
func adminJSON(addr, method, path string, out any) error {
	resp, err := caddycmd.AdminAPIRequest(addr, method, path, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %v", method, path, err)
	}
	return nil
}
