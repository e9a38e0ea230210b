package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/oauthgw/caddy-oauth-gateway/internal/admincli"
	"github.com/spf13/cobra"
)

// The `caddy oauth-gateway` command: a thin client of the admin API
// (admin.go), which never returns a token or secret, so neither can it.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth-gateway",
		Usage: "status|authorize|refresh|revoke [--address <admin address>] [--config <path> [--adapter <name>]]",
		Short: "Lists, authorizes, refreshes and revokes the OAuth gateway's credentials",
		Long: `
Talks to a running Caddy's admin API (/oauth_gateway/...).

  caddy oauth-gateway status
      Lists the credentials with their state and last error.

  caddy oauth-gateway authorize <credential id | resource URL> [--timeout 10m]
      Starts the operator's authorization of a shared authorization_code
      credential, prints the URL to open in a browser and waits until the
      authorization completes.

  caddy oauth-gateway refresh <credential id | resource URL>
      Obtains a new token now (an operator's refresh: it also ends a
      backoff or a dead state's wait).

  caddy oauth-gateway revoke <credential id | resource URL> [--forget]
      Revokes the credential's tokens at its authorization server (RFC
      7009) and forgets them; --forget only forgets them.

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
		RunE:  run(func(c admincli.Client, _ caddycmd.Flags) error { return c.Status() }),
	}
	adminFlags(status)
	authorize := &cobra.Command{
		Use:   "authorize <credential id | resource URL> [--address <admin address>] [--timeout 10m]",
		Short: "Authorizes a shared authorization_code credential in a browser and waits until it is connected",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(c admincli.Client, fl caddycmd.Flags) error {
			return c.Authorize(fl.Arg(0), fl.Duration("timeout"))
		}),
	}
	adminFlags(authorize)
	authorize.Flags().Duration("timeout", 10*time.Minute, "How long to wait for the authorization to complete")
	refresh := &cobra.Command{
		Use:   "refresh <credential id | resource URL> [--address <admin address>]",
		Short: "Obtains a new token for a credential now",
		Args:  cobra.ExactArgs(1),
		RunE:  run(func(c admincli.Client, fl caddycmd.Flags) error { return c.Refresh(fl.Arg(0)) }),
	}
	adminFlags(refresh)
	revoke := &cobra.Command{
		Use:   "revoke <credential id | resource URL> [--forget] [--address <admin address>]",
		Short: "Revokes a credential's tokens at its authorization server and forgets them",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(c admincli.Client, fl caddycmd.Flags) error {
			return c.Revoke(fl.Arg(0), fl.Bool("forget"))
		}),
	}
	adminFlags(revoke)
	revoke.Flags().Bool("forget", false, "Only forget the tokens; revoke nothing at the server")
	cmd.AddCommand(status, authorize, refresh, revoke)
}

// run makes a subcommand's RunE of f, given the admin address; errors
// are reported the way Caddy's own commands report them.
func run(f func(c admincli.Client, fl caddycmd.Flags) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			addr, err := adminAddress(fl)
			if err == nil {
				err = f(admincli.Client{Do: adminRequest(addr), Out: c.OutOrStdout()}, fl)
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

// adminRequest makes requests to the admin API at addr the way Caddy's
// own commands do. A refused connection says which address was tried and
// how to name another: the raw dial error does not.
func adminRequest(addr string) func(method, path string) (*http.Response, error) {
	return func(method, path string) (*http.Response, error) {
		resp, err := caddycmd.AdminAPIRequest(addr, method, path, nil, nil)
		if err != nil && (errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")) {
			return nil, fmt.Errorf("no Caddy admin API answers at %s (connection refused): is Caddy running? "+
				"Name its admin address with --address, or give its configuration with --config (the `admin` global option sets the address)", addr)
		}
		return resp, err
	}
}
