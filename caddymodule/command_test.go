package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/oauthgw/caddy-oauth-gateway/tokenstore"
)

// fakeAdmin stands in for the admin API of admin.go.
type fakeAdmin struct {
	list       []tokenstore.Status
	authorized chan string // ids POSTed to .../authorize
	events     chan string // change events ("data" JSON) to stream
}

func newFakeAdmin(t *testing.T, list ...tokenstore.Status) (*fakeAdmin, string) {
	f := &fakeAdmin{list: list, authorized: make(chan string, 4), events: make(chan string, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth_gateway/credentials", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(f.list)
	})
	mux.HandleFunc("POST /oauth_gateway/credentials/{id}/authorize", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		f.authorized <- id
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "authorization_url": "https://as.example/authorize?state=s-" + id})
	})
	mux.HandleFunc("POST /oauth_gateway/credentials/{id}/refresh", func(w http.ResponseWriter, r *http.Request) {
		st := tokenstore.Status{ID: r.PathValue("id"), State: tokenstore.StateHealthy, Generation: 7}
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /oauth_gateway/credentials/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		res := map[string]any{"id": r.PathValue("id"), "state": "dead"}
		if r.URL.Query().Get("forget") != "true" {
			res["revocation"] = map[string]bool{"refresh_token_revoked": true, "access_token_revoked": true}
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /oauth_gateway/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for _, s := range f.list {
			b, _ := json.Marshal(s)
			fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b)
		}
		fmt.Fprint(w, ": keepalive\n\n")
		_ = rc.Flush()
		for {
			select {
			case data := <-f.events:
				fmt.Fprintf(w, "event: change\ndata: %s\n\n", data)
				_ = rc.Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

// runGatewayCommand runs `caddy oauth-gateway args...` and returns its
// output and error.
func runGatewayCommand(args ...string) (string, error) {
	cmd := &cobra.Command{Use: "oauth-gateway", SilenceUsage: true, SilenceErrors: true}
	gatewayCommand(cmd)
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var cliCredentials = []tokenstore.Status{
	{ID: "cc-1", Resource: "https://api.example/", Grant: "client_credentials", State: tokenstore.StateHealthy,
		Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Generation: 3},
	{ID: "ac-shared", Resource: "https://mcp.example/", Grant: "authorization_code", State: tokenstore.StateDead,
		LastError: "needs authorization\nby an operator"},
	{ID: "ac-alice", Resource: "https://mcp.example/", Principal: "alice", Grant: "authorization_code", State: tokenstore.StateHealthy},
	{ID: "dup-1", Resource: "https://dup.example/", Grant: "authorization_code", State: tokenstore.StateDead},
	{ID: "dup-2", Resource: "https://dup.example/", Grant: "authorization_code", State: tokenstore.StateDead},
}

func TestCommandStatus(t *testing.T) {
	_, addr := newFakeAdmin(t, cliCredentials...)
	out, err := runGatewayCommand("status", "--address", addr)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 1+len(cliCredentials) {
		t.Fatalf("want a header and %d rows:\n%s", len(cliCredentials), out)
	}
	for _, col := range []string{"ID", "RESOURCE", "PRINCIPAL", "GRANT", "STATE", "EXPIRY", "LAST ERROR"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header lacks %s: %q", col, lines[0])
		}
	}
	for i, s := range cliCredentials {
		if f := strings.Fields(lines[i+1]); len(f) < 6 || f[0] != s.ID || f[1] != s.Resource || f[4] != string(s.State) {
			t.Errorf("row %d: %q", i, lines[i+1])
		}
	}
	if !strings.Contains(out, "needs authorization by an operator") || !strings.Contains(lines[1], "2030-01-0") {
		t.Errorf("last error or expiry:\n%s", out)
	}
}

func TestCommandAuthorize(t *testing.T) {
	for _, target := range []string{"ac-shared", "https://mcp.example/", "https://mcp.example"} {
		t.Run(target, func(t *testing.T) {
			f, addr := newFakeAdmin(t, cliCredentials...)
			type result struct {
				out string
				err error
			}
			res := make(chan result, 1)
			go func() {
				out, err := runGatewayCommand("authorize", target, "--address", addr, "--timeout", "20s")
				res <- result{out, err}
			}()
			select {
			case id := <-f.authorized:
				if id != "ac-shared" {
					t.Fatalf("authorized %q", id)
				}
			case r := <-res:
				t.Fatalf("returned before authorizing: %v\n%s", r.err, r.out)
			}
			// Events that do not complete it: another credential, another kind.
			f.events <- `{"id":"ac-alice","generation":2,"state":"healthy","kind":"authorized"}`
			f.events <- `{"id":"ac-shared","generation":1,"state":"dead","kind":"dead"}`
			select {
			case r := <-res:
				t.Fatalf("returned before the authorized event: %v\n%s", r.err, r.out)
			case <-time.After(200 * time.Millisecond):
			}
			f.events <- `{"id":"ac-shared","generation":2,"state":"healthy","kind":"authorized"}`
			select {
			case r := <-res:
				if r.err != nil {
					t.Fatalf("authorize: %v\n%s", r.err, r.out)
				}
				if !strings.Contains(r.out, "\nhttps://as.example/authorize?state=s-ac-shared\n") ||
					!strings.Contains(r.out, "open this URL in a browser") || !strings.HasSuffix(r.out, "connected\n") {
					t.Fatalf("output:\n%s", r.out)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("authorize did not return after the authorized event")
			}
		})
	}
}

func TestCommandAuthorizeTimeout(t *testing.T) {
	_, addr := newFakeAdmin(t, cliCredentials...)
	out, err := runGatewayCommand("authorize", "ac-shared", "--address", addr, "--timeout", "100ms")
	if err == nil || !strings.Contains(err.Error(), "did not complete") || strings.Contains(out, "connected") {
		t.Fatalf("timeout: %v\n%s", err, out)
	}
}

func TestCommandAuthorizeUnknown(t *testing.T) {
	f, addr := newFakeAdmin(t, cliCredentials...)
	for _, target := range []string{"nope", "https://other.example/", "https://api.example/"} {
		_, err := runGatewayCommand("authorize", target, "--address", addr)
		if err == nil || !strings.Contains(err.Error(), "no credential") {
			t.Errorf("%s: %v", target, err)
		}
	}
	if len(f.authorized) != 0 {
		t.Errorf("authorized something")
	}
}

func TestCommandAuthorizeAmbiguous(t *testing.T) {
	f, addr := newFakeAdmin(t, cliCredentials...)
	_, err := runGatewayCommand("authorize", "https://dup.example/", "--address", addr)
	if err == nil || !strings.Contains(err.Error(), "dup-1, dup-2") || !strings.Contains(err.Error(), "by its id") {
		t.Fatalf("ambiguous: %v", err)
	}
	if len(f.authorized) != 0 {
		t.Errorf("authorized something")
	}
}

func TestCommandAdminDown(t *testing.T) {
	_, addr := newFakeAdmin(t)
	srvDown := "127.0.0.1:1"
	_, err := runGatewayCommand("status", "--address", srvDown)
	if err == nil || !strings.Contains(err.Error(), srvDown) || !strings.Contains(err.Error(), "--address") || strings.Contains(err.Error(), "dial tcp") {
		t.Errorf("status against nothing: %v, want the address tried and how to name another", err)
	}
	if out, err := runGatewayCommand("status", "--address", addr); err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("empty list: %v %q", err, out)
	}
}

// Issue 22, item 5: refresh and revoke at a shell, by id or resource.
func TestCommandRefreshAndRevoke(t *testing.T) {
	_, addr := newFakeAdmin(t, tokenstore.Status{ID: "c1", Resource: "https://api.example/v1", Grant: "client_credentials"})
	out, err := runGatewayCommand("refresh", "https://api.example/v1", "--address", addr)
	if err != nil || !strings.Contains(out, "c1: healthy, generation 7") {
		t.Fatalf("refresh: %v %q", err, out)
	}
	out, err = runGatewayCommand("revoke", "c1", "--address", addr)
	if err != nil || !strings.Contains(out, "refresh token revoked: true") {
		t.Fatalf("revoke: %v %q", err, out)
	}
	out, err = runGatewayCommand("revoke", "c1", "--forget", "--address", addr)
	if err != nil || !strings.Contains(out, "nothing revoked") {
		t.Fatalf("revoke --forget: %v %q", err, out)
	}
	if _, err := runGatewayCommand("refresh", "nope", "--address", addr); err == nil || !strings.Contains(err.Error(), "no credential") {
		t.Fatalf("unknown credential: %v", err)
	}
}
