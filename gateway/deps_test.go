package gateway

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The architecture in one test: dependencies point one way, caddymodule →
// gateway → tokenstore / oauthclient / discovery → normalize / challenge /
// redact, and nothing below caddymodule depends on Caddy.
func TestDependenciesPointOneWay(t *testing.T) {
	const module = "github.com/oauthgw/caddy-oauth-gateway/"
	layers := map[string][]string{
		// package: the project packages it must not depend on
		"gateway":     {"caddymodule"},
		"tokenstore":  {"caddymodule", "gateway", "oauthclient", "discovery"},
		"oauthclient": {"caddymodule", "gateway", "tokenstore", "discovery"},
		"discovery":   {"caddymodule", "gateway", "tokenstore", "oauthclient"},
		"normalize":   {"caddymodule", "gateway", "tokenstore", "oauthclient", "discovery"},
		"challenge":   {"caddymodule", "gateway", "tokenstore", "oauthclient", "discovery"},
		"redact":      {"caddymodule", "gateway", "tokenstore", "oauthclient", "discovery"},
	}
	for pkg, forbidden := range layers {
		out, err := exec.Command(goTool(), "list", "-deps", module+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "github.com/caddyserver/") {
				t.Errorf("%s depends on %s: nothing below caddymodule may depend on Caddy", pkg, dep)
			}
			for _, f := range forbidden {
				if dep == module+f || strings.HasPrefix(dep, module+f+"/") {
					t.Errorf("%s depends on %s, a package above it", pkg, dep)
				}
			}
		}
	}
}

// goTool is the go command: the one of this toolchain when its GOROOT is
// known (it is not in a -trimpath build), else the one on the PATH.
func goTool() string {
	if root := runtime.GOROOT(); root != "" {
		if p := filepath.Join(root, "bin", "go"); filepath.IsAbs(p) {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return "go"
}
