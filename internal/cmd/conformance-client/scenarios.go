package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP side of each scenario follows the Go SDK's conformance client
// (go-sdk/conformance/everything-client), with two differences: the
// client has no OAuth of its own (it talks to Caddy), and every call is
// wrapped so that the gateway's consent answers are acted on.

// mcpRun is one scenario's MCP client against Caddy.
type mcpRun struct {
	sc       *scenario
	endpoint string
	httpc    *http.Client
	user     *user
	opts     *mcp.ClientOptions
	cs       *mcp.ClientSession // the current session
}

// transport sends the profile's headers and, for per-user credentials,
// the user's basic credentials with every request to Caddy.
type transport struct {
	base           http.RoundTripper
	name, password string
	headers        map[string]string
	hint           *authHint // nil without a user
}

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if t.name != "" {
		r.SetBasicAuth(t.name, t.password)
	}
	for k, v := range t.headers {
		r.Header.Set(k, v)
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil && t.hint != nil {
		t.hint.noteAuthorizationRequired(resp)
	}
	return resp, err
}

func runScenario(ctx context.Context, sc *scenario, p *profile, c *caddyProc) error {
	r := &mcpRun{sc: sc, endpoint: c.siteURL(sc)}
	t := transport{base: http.DefaultTransport, name: p.user, password: p.password, headers: p.headers}
	if p.perUser {
		r.user = newUser(c.origin, p)
		t.hint = &r.user.hint
	}
	r.httpc = &http.Client{Transport: t}
	log.Printf("gateway profile %s; MCP client -> %s", p.kind, r.endpoint)
	switch {
	case sc.name == "initialize":
		return r.basic(ctx)
	case sc.name == "tools_call":
		return r.toolsCall(ctx)
	case sc.name == "elicitation-sep1034-client-defaults":
		return r.elicitationDefaults(ctx)
	case sc.name == "sse-retry":
		return r.callNamed(ctx, nil, "test_reconnection", map[string]any{})
	case sc.name == "request-metadata":
		return r.connectOnly(ctx)
	case sc.name == "json-schema-ref-no-deref":
		return r.listOnly(ctx)
	case sc.name == "json-schema-2020-12-preservation":
		return r.schemaEcho(ctx)
	case sc.name == "sep-2322-client-request-state":
		return r.mrtr(ctx)
	case sc.name == "http-standard-headers":
		return r.standardHeaders(ctx)
	case sc.name == "http-custom-headers":
		return r.customHeaders(ctx)
	case sc.name == "http-invalid-tool-headers":
		return r.invalidToolHeaders(ctx)
	case strings.HasPrefix(sc.name, "sep-2640-"):
		return r.skills(ctx)
	case sc.name == "auth/client-credentials-basic", sc.name == "auth/client-credentials-jwt",
		sc.name == "auth/wif-jwt-bearer":
		// The TypeScript reference client lists tools only here.
		return r.authListOnly(ctx)
	case strings.HasPrefix(sc.name, "auth/"):
		return r.auth(ctx)
	default:
		log.Printf("scenario %s is unknown to this client: connecting and listing tools", sc.name)
		return r.listOnly(ctx)
	}
}

// connect opens a session (r.cs), consenting when the gateway asks.
func (r *mcpRun) connect(ctx context.Context, opts *mcp.ClientOptions) error {
	r.opts = opts
	return r.reconnect(ctx)
}

func (r *mcpRun) reconnect(ctx context.Context) error {
	if r.cs != nil {
		_ = r.cs.Close()
		r.cs = nil
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "oauthgw-conformance-client", Version: "1.0.0"}, r.opts)
	var cs *mcp.ClientSession
	err := withConsent(ctx, r.user, "connect", func() error {
		var err error
		cs, err = client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: r.endpoint, HTTPClient: r.httpc},
			&mcp.ClientSessionOptions{ProtocolVersion: r.sc.protocolOrDefault()})
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if res := cs.InitializeResult(); res != nil {
		log.Printf("connected: protocol %s", res.ProtocolVersion)
	}
	r.cs = cs
	return nil
}

// close ends the current session.
func (r *mcpRun) close() {
	if r.cs != nil {
		_ = r.cs.Close()
	}
}

func (r *mcpRun) listTools(ctx context.Context) (*mcp.ListToolsResult, error) {
	var res *mcp.ListToolsResult
	err := withConsent(ctx, r.user, "tools/list", func() error {
		var err error
		res, err = r.cs.ListTools(ctx, nil)
		return err
	}, func() error { return r.reconnect(ctx) })
	if err != nil {
		return nil, fmt.Errorf("tools/list: %w", err)
	}
	names := make([]string, 0, len(res.Tools))
	for _, t := range res.Tools {
		names = append(names, t.Name)
	}
	log.Printf("tools/list: %v", names)
	return res, nil
}

func (r *mcpRun) callTool(ctx context.Context, name string, args map[string]any) (*mcp.CallToolResult, error) {
	var res *mcp.CallToolResult
	err := withConsent(ctx, r.user, "tools/call "+name, func() error {
		var err error
		res, err = r.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		return err
	}, func() error { return r.reconnect(ctx) })
	if err != nil {
		return nil, fmt.Errorf("tools/call %s: %w", name, err)
	}
	log.Printf("tools/call %s: isError=%v", name, res.IsError)
	return res, nil
}

func (r *mcpRun) basic(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	_, err := r.listTools(ctx)
	return err
}

func (r *mcpRun) connectOnly(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	r.close()
	return nil
}

func (r *mcpRun) listOnly(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	_, err := r.listTools(ctx)
	return err
}

func (r *mcpRun) toolsCall(ctx context.Context) error {
	return r.callNamed(ctx, nil, "add_numbers", map[string]any{"a": 5, "b": 3})
}

// callNamed lists tools and calls the named one.
func (r *mcpRun) callNamed(ctx context.Context, opts *mcp.ClientOptions, name string, args map[string]any) error {
	if err := r.connect(ctx, opts); err != nil {
		return err
	}
	defer r.close()
	tools, err := r.listTools(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(tools.Tools, func(t *mcp.Tool) bool { return t.Name == name }) {
		return fmt.Errorf("tool %q not listed", name)
	}
	_, err = r.callTool(ctx, name, args)
	return err
}

func (r *mcpRun) elicitationDefaults(ctx context.Context) error {
	opts := &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			log.Printf("elicitation/create received; accepting with empty content (the SDK applies defaults)")
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{}}, nil
		},
	}
	return r.callNamed(ctx, opts, "test_client_elicitation_defaults", map[string]any{})
}

func (r *mcpRun) schemaEcho(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	tools, err := r.listTools(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(tools.Tools, func(t *mcp.Tool) bool { return t.Name == "json_schema_2020_12_tool" })
	if i < 0 {
		return fmt.Errorf("tool json_schema_2020_12_tool not listed")
	}
	_, err = r.callTool(ctx, "json_schema_echo", map[string]any{"schema": tools.Tools[i].InputSchema})
	return err
}

func (r *mcpRun) mrtr(ctx context.Context) error {
	opts := &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{}},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirmed": true}}, nil
		},
	}
	if err := r.connect(ctx, opts); err != nil {
		return err
	}
	defer r.close()
	for _, name := range []string{"test_mrtr_echo_state", "test_mrtr_no_state", "test_mrtr_unrelated", "test_mrtr_no_result_type"} {
		if _, err := r.callTool(ctx, name, map[string]any{}); err != nil {
			log.Printf("%v (some calls are expected to be refused)", err)
		}
	}
	return nil
}

func (r *mcpRun) standardHeaders(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	if tools, err := r.listTools(ctx); err == nil && len(tools.Tools) > 0 {
		_, _ = r.callTool(ctx, tools.Tools[0].Name, map[string]any{})
	}
	if res, err := r.cs.ListResources(ctx, nil); err == nil && len(res.Resources) > 0 {
		_, _ = r.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: res.Resources[0].URI})
	}
	if prompts, err := r.cs.ListPrompts(ctx, nil); err == nil && len(prompts.Prompts) > 0 {
		_, _ = r.cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: prompts.Prompts[0].Name, Arguments: map[string]string{}})
	}
	return nil
}

func (r *mcpRun) customHeaders(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	if _, err := r.listTools(ctx); err != nil {
		return err
	}
	calls, _ := r.sc.ctx["toolCalls"].([]any)
	for _, item := range calls {
		obj, _ := item.(map[string]any)
		name, _ := obj["name"].(string)
		args, _ := obj["arguments"].(map[string]any)
		if args == nil {
			args = map[string]any{}
		}
		if _, err := r.callTool(ctx, name, args); err != nil {
			log.Printf("%v", err)
		}
	}
	return nil
}

func (r *mcpRun) invalidToolHeaders(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	tools, err := r.listTools(ctx)
	if err != nil {
		return err
	}
	for _, t := range tools.Tools {
		if _, err := r.callTool(ctx, t.Name, map[string]any{"region": "us-west1"}); err != nil {
			log.Printf("%v", err)
		}
	}
	return nil
}

// auth is the well-behaved client of the authorization scenarios: connect,
// list tools, call test-tool; the gateway does all the OAuth.
func (r *mcpRun) auth(ctx context.Context) error {
	if err := r.connect(ctx, nil); err != nil {
		return err
	}
	defer r.close()
	if _, err := r.listTools(ctx); err != nil {
		return err
	}
	_, err := r.callTool(ctx, "test-tool", map[string]any{})
	return err
}

func (r *mcpRun) authListOnly(ctx context.Context) error {
	return r.listOnly(ctx)
}
