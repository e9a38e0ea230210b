package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// The skills extension (SEP-2640) scenarios judge a host's handling of
// skills: never read a skill's files before loading it, and verify size,
// digest and frontmatter of what it reads. The Go SDK has no skills
// support, so this is a small JSON-RPC client of its own; through the
// gateway it shows that methods the gateway does not know pass through.

type rawClient struct {
	endpoint string
	httpc    *http.Client
	user     *user
	protocol string
	session  string
	nextID   atomic.Int64
}

func (c *rawClient) post(ctx context.Context, method string, params any, notify bool) (json.RawMessage, error) {
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if params != nil {
		msg["params"] = params
	}
	if !notify {
		msg["id"] = c.nextID.Add(1)
	}
	body, _ := json.Marshal(msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", c.protocol)
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if s := resp.Header.Get("Mcp-Session-Id"); s != "" {
		c.session = s
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if notify {
		return nil, nil
	}
	var answer struct {
		Result json.RawMessage `json:"result"`
		Error  *jsonrpc.Error  `json:"error"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d, not JSON-RPC: %.200s", method, resp.StatusCode, raw)
	}
	if answer.Error != nil {
		return nil, answer.Error
	}
	return answer.Result, nil
}

func (c *rawClient) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	var res json.RawMessage
	err := withConsent(ctx, c.user, method, func() error {
		var err error
		res, err = c.post(ctx, method, params, false)
		return err
	}, nil)
	return res, err
}

type skillEntry struct {
	URI         string            `json:"uri"`
	Frontmatter map[string]string `json:"frontmatter"`
	Resources   []struct {
		URI    string `json:"uri"`
		Digest string `json:"digest"`
		Size   int    `json:"size"`
	} `json:"resources"`
}

func (r *mcpRun) skills(ctx context.Context) error {
	c := &rawClient{endpoint: r.endpoint, httpc: r.httpc, user: r.user, protocol: r.sc.protocolOrDefault()}
	if _, err := c.call(ctx, "initialize", map[string]any{
		"protocolVersion": c.protocol,
		"capabilities":    map[string]any{"extensions": map[string]any{"io.modelcontextprotocol/skills": map[string]any{}}},
		"clientInfo":      map[string]any{"name": "oauthgw-conformance-client", "version": "1.0.0"},
	}); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if _, err := c.post(ctx, "notifications/initialized", nil, true); err != nil {
		return fmt.Errorf("notifications/initialized: %w", err)
	}
	raw, err := c.call(ctx, "skills/list", map[string]any{})
	if err != nil {
		return fmt.Errorf("skills/list: %w", err)
	}
	var list struct {
		Skills []skillEntry `json:"skills"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("skills/list result: %v", err)
	}
	log.Printf("skills/list: %d skill(s)", len(list.Skills))
	if r.sc.name == "sep-2640-client-no-prefetch" || len(list.Skills) == 0 {
		return nil // listing is not loading: nothing is read
	}
	// Load the first skill: read and verify its SKILL.md, then (only if
	// it verifies) its other files.
	sk := list.Skills[0]
	for i, res := range sk.Resources {
		text, err := c.readText(ctx, res.URI)
		if err != nil {
			return err
		}
		if problem := verifySkillFile(text, res.Size, res.Digest); problem != "" {
			log.Printf("rejecting skill %s: %s: %s", sk.URI, res.URI, problem)
			return nil
		}
		if i == 0 && res.URI == sk.URI {
			if problem := compareFrontmatter(text, sk.Frontmatter); problem != "" {
				log.Printf("rejecting skill %s: %s", sk.URI, problem)
				return nil
			}
		}
		log.Printf("verified %s", res.URI)
	}
	return nil
}

func (c *rawClient) readText(ctx context.Context, uri string) (string, error) {
	raw, err := c.call(ctx, "resources/read", map[string]any{"uri": uri})
	if err != nil {
		return "", fmt.Errorf("resources/read %s: %w", uri, err)
	}
	var res struct {
		Contents []struct {
			Text string `json:"text"`
		} `json:"contents"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || len(res.Contents) == 0 {
		return "", fmt.Errorf("resources/read %s: no contents", uri)
	}
	return res.Contents[0].Text, nil
}

func verifySkillFile(text string, size int, digest string) string {
	if size > 0 && len(text) != size {
		return fmt.Sprintf("size %d, the entry says %d", len(text), size)
	}
	if alg, want, ok := strings.Cut(digest, ":"); ok && alg == "sha256" {
		sum := sha256.Sum256([]byte(text))
		if hex.EncodeToString(sum[:]) != want {
			return "sha256 digest mismatch"
		}
	}
	return ""
}

// compareFrontmatter compares a SKILL.md's YAML frontmatter (flat
// "key: value" lines) with the listed entry's.
func compareFrontmatter(text string, want map[string]string) string {
	rest, ok := strings.CutPrefix(text, "---\n")
	if !ok {
		return "no frontmatter"
	}
	block, _, ok := strings.Cut(rest, "\n---")
	if !ok {
		return "unterminated frontmatter"
	}
	got := map[string]string{}
	for _, line := range strings.Split(block, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			got[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Sprintf("frontmatter %s is %q, the entry says %q", k, got[k], v)
		}
	}
	return ""
}
