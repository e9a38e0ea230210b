package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oauthgw/caddy-oauth-gateway/internal/fakeoauth"
)

// The operator connects a shared credential with `caddy oauth-gateway
// authorize`, then sees it healthy in `caddy oauth-gateway status`.
func TestCLIAuthorize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakeoauth.AuthServerOptions{}, fakeoauth.UpstreamOptions{})
	c := startCaddy(t, e.sharedAuthCodeSite(), caddyOptions{Env: e.secretEnv()})
	if status, body, _ := get(t, c.URL("/echo")); status == http.StatusOK {
		t.Fatalf("connected before the operator authorized it: %s", body)
	}
	id := listCredentials(t, c)[0].ID
	admin := fmt.Sprintf("127.0.0.1:%d", c.admin)

	cmd := exec.Command(caddyBin, "oauth-gateway", "authorize", id, "--address", admin, "--timeout", "2m")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out strings.Builder
	var authURL string
	deadline := time.After(60 * time.Second)
	for authURL == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("authorize ended without a URL: %v\nstdout:\n%s\nstderr:\n%s", cmd.Wait(), out.String(), stderr.String())
			}
			out.WriteString(line + "\n")
			if strings.HasPrefix(line, e.as.AuthorizeURL()) {
				authURL = line
			}
		case <-deadline:
			t.Fatalf("no authorization URL printed:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "open this URL in a browser") {
		t.Errorf("no instruction to open the URL:\n%s", out.String())
	}

	callback := consent(t, authURL, "alice")
	if resp, body := step(t, http.MethodGet, callback, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("operator's callback: %d %s", resp.StatusCode, body)
	}

	for line := range lines { // until the command closes stdout
		out.WriteString(line + "\n")
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil || !strings.HasSuffix(out.String(), "connected\n") {
			t.Fatalf("authorize: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("authorize did not exit after the callback:\n%s", out.String())
	}

	if status, body, _ := get(t, c.URL("/echo")); status != http.StatusOK || decodeEcho(t, body).Subject != "alice" {
		t.Fatalf("after the operator connected it: %d %s", status, body)
	}

	st, err := exec.Command(caddyBin, "oauth-gateway", "status", "--address", admin).CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, st)
	}
	rows := strings.Split(strings.TrimSpace(string(st)), "\n")
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "ID") {
		t.Fatalf("status:\n%s", st)
	}
	if f := strings.Fields(rows[1]); len(f) < 5 || f[0] != id || f[1] != e.up.Resource() || f[3] != "authorization_code" || f[4] != "healthy" {
		t.Fatalf("status row %q\n%s", rows[1], st)
	}
	t.Logf("authorize:\n%s\nstatus:\n%s", out.String(), st)
	assertNoSecrets(t, out.String()+stderr.String()+string(st), e.secrets()...)
}
