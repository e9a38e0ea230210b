package caddymodule

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// exampleCaddyfile is one Caddyfile shipped with the module: a file, or a
// ```caddyfile block of README.md.
type exampleCaddyfile struct {
	name string
	text []byte
	// adapt is false for syntax synopses, which are checked for
	// formatting only.
	adapt bool
	// fragment is true for README blocks that start with a directive
	// rather than a site address or the global options block.
	fragment bool
}

// synopsis matches the <placeholder> arguments of a syntax synopsis such
// as "resource <url>" or "storage redis <redis-url> [<redis-url>...]".
var synopsis = regexp.MustCompile(`<[A-Za-z][^<>\n]*>`)

// TestExampleCaddyfiles checks every Caddyfile the project shows to
// people: Caddyfile.example, demo/Caddyfile and each fenced code block of
// README.md whose info string is "caddyfile". Each must be exactly as
// `caddy fmt` writes it, and must adapt with the caddyfile adapter with
// no error and no warning (neither the adapter's warnings nor the
// warnings directives log while being parsed, such as reverse_proxy's
// "Unnecessary header_up Host").
//
// README blocks are adapted by these rules:
//   - a block containing <placeholder> arguments is a syntax synopsis
//     (e.g. "oauth_gateway [<matcher>] { resource <url> ... }"): it is
//     checked for formatting only, since it is not a configuration;
//   - a block whose first token is "{" (global options) or looks like a
//     site address (contains "." or ":") is adapted as it is;
//   - any other block starts with a directive, i.e. is the inside of a
//     site block: it is adapted wrapped in "example.com { ... }".
//
// A README block that uses a subdirective the module does not parse yet
// fails here with the parser's error, naming the block.
func TestExampleCaddyfiles(t *testing.T) {
	var examples []exampleCaddyfile
	for _, path := range []string{"../Caddyfile.example", "../demo/Caddyfile"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		examples = append(examples, exampleCaddyfile{name: strings.TrimPrefix(path, "../"), text: b, adapt: true})
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeCaddyfileBlocks(t, readme)
	if len(blocks) == 0 {
		t.Fatal("README.md: no ```caddyfile blocks found")
	}
	examples = append(examples, blocks...)

	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			if formatted := caddyfile.Format(ex.text); !bytes.Equal(formatted, ex.text) {
				t.Errorf("%s is not `caddy fmt` clean:\n%s", ex.name, lineDiff(ex.text, formatted))
			}
			if !ex.adapt {
				return
			}
			text := ex.text
			if ex.fragment {
				text = wrapInSite(text)
			}
			warnings, logged, err := adaptCaddyfile(text)
			if err != nil {
				t.Errorf("%s: adapting: %v", ex.name, err)
			}
			for _, w := range warnings {
				t.Errorf("%s: adapter warning: %s", ex.name, w.String())
			}
			for _, w := range logged {
				t.Errorf("%s: warning logged while adapting: %s", ex.name, w)
			}
		})
	}
}

// readmeCaddyfileBlocks returns the ```caddyfile blocks of a Markdown
// text, named README.md:<line of the opening fence>.
func readmeCaddyfileBlocks(t *testing.T, md []byte) []exampleCaddyfile {
	t.Helper()
	var (
		out     []exampleCaddyfile
		in      bool
		isCaddy bool
		start   int
		body    bytes.Buffer
	)
	sc := bufio.NewScanner(bytes.NewReader(md))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && strings.HasPrefix(trimmed, "```"):
			in, start = true, n
			isCaddy = strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), "caddyfile")
			body.Reset()
		case in && trimmed == "```":
			in = false
			if isCaddy {
				text := bytes.Clone(body.Bytes())
				out = append(out, exampleCaddyfile{
					name:     fmt.Sprintf("README.md:%d", start),
					text:     text,
					adapt:    !synopsis.Match(text),
					fragment: isFragment(text),
				})
			}
		case in:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if in {
		t.Fatalf("README.md:%d: code block never closed", start)
	}
	return out
}

// isFragment reports whether a Caddyfile starts with a directive rather
// than the global options block or a site address.
func isFragment(text []byte) bool {
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		first := strings.Fields(line)[0]
		return first != "{" && !strings.ContainsAny(first, ".:")
	}
	return false
}

// wrapInSite puts a directive fragment inside "example.com { ... }".
func wrapInSite(text []byte) []byte {
	var b bytes.Buffer
	b.WriteString("example.com {\n")
	for _, line := range strings.SplitAfter(string(text), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteByte('\t')
		}
		b.WriteString(line)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// adaptCaddyfile adapts text with the caddyfile adapter and returns its
// warnings plus the warnings (and errors) logged to Caddy's default logger
// meanwhile, where directives such as reverse_proxy report lint findings.
func adaptCaddyfile(text []byte) ([]caddyconfig.Warning, []string, error) {
	_, orig, buffer := caddy.BufferedLog()
	_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(text, map[string]any{"filename": "Caddyfile"})
	core, logs := observer.New(zapcore.WarnLevel)
	buffer.FlushTo(zap.New(core))
	caddy.UnbufferDefaultLogger(orig)
	var logged []string
	for _, e := range logs.All() {
		msg := e.Message
		if e.LoggerName != "" {
			msg = e.LoggerName + ": " + msg
		}
		logged = append(logged, msg)
	}
	return warnings, logged, err
}

// lineDiff lists the first lines where have and want differ.
func lineDiff(have, want []byte) string {
	h := strings.Split(string(have), "\n")
	w := strings.Split(string(want), "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(h), len(w)) && shown < 10; i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			fmt.Fprintf(&b, "\tline %d: %q\n\t  fmt:   %q\n", i+1, hl, wl)
			shown++
		}
	}
	if len(h) != len(w) {
		fmt.Fprintf(&b, "\t(%d lines, formatted %d)\n", len(h), len(w))
	}
	return b.String()
}
