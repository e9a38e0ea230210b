// Command conformance-run runs every client scenario of one or more
// installed versions of the MCP conformance suite
// (@modelcontextprotocol/conformance) with cmd/conformance-client as the
// client command, so each scenario's OAuth is done by Caddy with this
// module, and prints a table: scenario, suite version, protocol, result,
// and for failures the suite's reason. It exits non-zero only when a
// scenario that conformance/expected-failures.txt does not list fails (or
// a suite could not be run at all).
//
//	conformance-run -node NODE -client BIN -out DIR -expected FILE \
//	    -suite 0.2.0-alpha.12=PKGDIR -suite 0.2.0-alpha.12@2026-07-28=PKGDIR -suite 0.1.16=PKGDIR
//
// A suite is LABEL[@SPEC-VERSION]=PACKAGE-DIR, where PACKAGE-DIR holds the
// installed package (its dist/index.js). With @SPEC-VERSION the scenarios
// are listed and run with --spec-version SPEC-VERSION; without it, each
// scenario runs at the version the suite infers for it.
//
// With -netns each suite invocation runs in a new network namespace with
// only the loopback interface up (unshare -n as root, -unshare -rn in a
// user namespace otherwise): every server a scenario starts, the suite's
// mock servers included (they listen on all interfaces), is reachable on
// loopback only, and nothing outside the machine is reachable from it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

type suiteFlag []string

func (s *suiteFlag) String() string     { return strings.Join(*s, ",") }
func (s *suiteFlag) Set(v string) error { *s = append(*s, v); return nil }

type suite struct {
	label   string // e.g. 0.2.0-alpha.12
	spec    string // --spec-version, "" for the suite's default
	pkgDir  string
	version string // the package's own version
}

func (s suite) id() string {
	if s.spec == "" {
		return s.label
	}
	return s.label + "@" + s.spec
}

func (s suite) protocolColumn() string {
	if s.spec == "" {
		return "default"
	}
	return s.spec
}

type result struct {
	Suite     string   `json:"suite"`
	Protocol  string   `json:"protocol"`
	Scenario  string   `json:"scenario"`
	Passed    bool     `json:"passed"`
	Expected  string   `json:"expected_failure,omitempty"` // the reason, when listed
	Checks    string   `json:"checks"`                     // passed/denominator
	Reasons   []string `json:"reasons,omitempty"`
	Vacuous   bool     `json:"vacuous,omitempty"` // no check passed or failed
	Skipped   bool     `json:"skipped,omitempty"` // not applicable at this spec version
	Seconds   float64  `json:"seconds"`
	ResultDir string   `json:"result_dir"`
}

func main() {
	var suites suiteFlag
	node := flag.String("node", "node", "Node.js binary")
	client := flag.String("client", "", "client command (conformance-client binary)")
	out := flag.String("out", "conformance/results", "results directory (replaced)")
	expectedPath := flag.String("expected", "", "expected failures file")
	only := flag.String("only", "", "run only scenarios whose name matches this regular expression")
	timeout := flag.Duration("timeout", 90*time.Second, "bound of one scenario's suite invocation")
	clientTimeout := flag.Duration("client-timeout", 25*time.Second, "bound of the client command (the suite kills it at 30 s)")
	netns := flag.Bool("netns", false, "run each suite invocation in a loopback-only network namespace (unshare -n)")
	unshareFlags := flag.String("unshare", "-n", "unshare's flags for -netns (-rn where only user namespaces are allowed)")
	flag.Var(&suites, "suite", "LABEL[@SPEC]=PACKAGE-DIR (repeatable)")
	flag.Parse()
	if *client == "" || len(suites) == 0 {
		fmt.Fprintln(os.Stderr, "conformance-run: -client and at least one -suite are required")
		os.Exit(2)
	}
	var filter *regexp.Regexp
	if *only != "" {
		filter = regexp.MustCompile(*only)
	}
	expected, err := loadExpected(*expectedPath)
	if err != nil {
		fatal(err)
	}
	if err := os.RemoveAll(*out); err != nil {
		fatal(err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	absOut, _ := filepath.Abs(*out)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &runner{ctx: ctx, node: *node, client: *client, out: absOut, timeout: *timeout, clientTimeout: *clientTimeout, netns: *netns, unshare: *unshareFlags}
	started := time.Now()
	var results []result
	broken := false
	for _, sv := range suites {
		s, err := parseSuite(sv)
		if err != nil {
			fatal(err)
		}
		names, err := r.list(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "conformance-run: listing %s: %v\n", s.id(), err)
			broken = true
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s (package %s, protocol %s): %d client scenarios\n", s.id(), s.version, s.protocolColumn(), len(names))
		for _, name := range names {
			if ctx.Err() != nil {
				break
			}
			if filter != nil && !filter.MatchString(name) {
				continue
			}
			res := r.run(s, name)
			if reason, ok := expected.lookup(s, name); ok {
				res.Expected = reason
			}
			mark := "pass"
			switch {
			case res.Skipped:
				mark = "skipped"
			case res.Passed && res.Vacuous:
				mark = "pass (vacuous)"
			case !res.Passed && res.Expected != "":
				mark = "FAIL (expected)"
			case !res.Passed:
				mark = "FAIL"
			}
			fmt.Fprintf(os.Stderr, "   %-48s %-16s %6.1fs  %s\n", name, mark, res.Seconds, strings.Join(res.Reasons, "; "))
			results = append(results, res)
		}
	}
	elapsed := time.Since(started).Round(time.Second)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "conformance-run: interrupted")
		broken = true
	}

	summary := render(results, expected, elapsed, filter != nil)
	fmt.Print(summary)
	_ = os.WriteFile(filepath.Join(absOut, "summary.md"), []byte(summary), 0o644)
	if b, err := json.MarshalIndent(results, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(absOut, "results.json"), b, 0o644)
	}

	unexpected := 0
	for _, res := range results {
		if !res.Passed && !res.Skipped && res.Expected == "" {
			unexpected++
		}
	}
	if broken || unexpected > 0 {
		fmt.Fprintf(os.Stderr, "conformance-run: %d unexpected failure(s)%s\n", unexpected, map[bool]string{true: ", and the run is incomplete", false: ""}[broken])
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "conformance-run: %v\n", err)
	os.Exit(2)
}

func parseSuite(v string) (suite, error) {
	head, dir, ok := strings.Cut(v, "=")
	if !ok || head == "" || dir == "" {
		return suite{}, fmt.Errorf("-suite %q: want LABEL[@SPEC]=PACKAGE-DIR", v)
	}
	s := suite{pkgDir: dir}
	s.label, s.spec, _ = strings.Cut(head, "@")
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return suite{}, fmt.Errorf("-suite %q: %v (is the suite installed?)", v, err)
	}
	var pkg struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(b, &pkg)
	s.version = pkg.Version
	return s, nil
}

type runner struct {
	ctx                        context.Context // canceled by SIGINT/SIGTERM
	node, client, out, unshare string
	timeout, clientTimeout     time.Duration
	netns                      bool
}

// command builds one suite invocation, in a loopback-only network
// namespace when asked.
func (r *runner) command(ctx context.Context, s suite, args ...string) *exec.Cmd {
	argv := []string{r.node, filepath.Join(s.pkgDir, "dist", "index.js")}
	argv = append(argv, args...)
	if r.netns {
		argv = append([]string{"unshare", r.unshare, "sh", "-c", `ip link set lo up && exec "$@"`, "sh"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Kill the whole process group at the deadline: the suite, its
	// client command and that command's Caddy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

var listLine = regexp.MustCompile(`^\s+-\s+(\S+)(?:\s+\[.*\])?\s*$`)

// list returns the suite's client scenarios.
func (r *runner) list(s suite) ([]string, error) {
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	args := []string{"list", "--client"}
	if s.spec != "" {
		args = append(args, "--spec-version", s.spec)
	}
	cmd := r.command(ctx, s, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(outb))
	for sc.Scan() {
		if m := listLine.FindStringSubmatch(sc.Text()); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no scenarios in %q", outb)
	}
	return names, nil
}

type check struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Description  string `json:"description"`
	ErrorMessage string `json:"errorMessage"`
}

func (r *runner) run(s suite, name string) result {
	safe := strings.ReplaceAll(name, "/", "_")
	dir := filepath.Join(r.out, s.id(), safe)
	res := result{Suite: s.label, Protocol: s.protocolColumn(), Scenario: name, ResultDir: dir}
	_ = os.MkdirAll(dir, 0o755)
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	args := []string{"client", "--command", r.client, "--scenario", name, "-o", filepath.Join(dir, "suite")}
	if s.spec != "" {
		args = append(args, "--spec-version", s.spec)
	}
	cmd := r.command(ctx, s, args...)
	cmd.Env = append(os.Environ(),
		"OAUTHGW_CONFORMANCE_ARTIFACTS="+filepath.Join(dir, "gateway"),
		"OAUTHGW_CONFORMANCE_TIMEOUT="+r.clientTimeout.String(),
		"NO_COLOR=1")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	started := time.Now()
	err := cmd.Run()
	res.Seconds = time.Since(started).Seconds()
	_ = os.WriteFile(filepath.Join(dir, "suite-output.txt"), output.Bytes(), 0o644)
	text := output.String()

	if strings.Contains(text, "SKIPPED: scenario") {
		res.Skipped, res.Passed = true, true
		res.Reasons = []string{"not applicable at this spec version"}
		return res
	}
	checks := readChecks(filepath.Join(dir, "suite"))
	passed, denom := 0, 0
	for _, c := range checks {
		switch c.Status {
		case "SUCCESS":
			passed++
			denom++
		case "FAILURE":
			denom++
			res.Reasons = append(res.Reasons, reasonOf(c))
		case "WARNING":
			res.Reasons = append(res.Reasons, "warning "+reasonOf(c))
		}
	}
	res.Checks = fmt.Sprintf("%d/%d", passed, denom)
	res.Vacuous = denom == 0
	res.Passed = err == nil
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.Passed = false
		res.Reasons = append(res.Reasons, fmt.Sprintf("suite invocation killed after %s", r.timeout))
	case err != nil && !errors.As(err, &exitErr):
		res.Reasons = append(res.Reasons, "could not run the suite: "+err.Error())
	}
	if strings.Contains(text, "CLIENT TIMED OUT") {
		res.Reasons = append(res.Reasons, "client timed out")
	}
	if m := regexp.MustCompile(`CLIENT EXITED WITH ERROR \(code (-?\d+)\)`).FindStringSubmatch(text); m != nil {
		res.Reasons = append(res.Reasons, "client command exited "+m[1])
	}
	if msg := clientError(dir); msg != "" {
		res.Reasons = append(res.Reasons, "client: "+msg)
	}
	if len(checks) == 0 && !res.Passed {
		res.Reasons = append(res.Reasons, "the suite recorded no checks: "+suiteError(text))
	}
	return res
}

// clientError is the client command's last failure line, if any.
func clientError(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "gateway", "client.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if _, msg, ok := strings.Cut(lines[i], "failed: "); ok && strings.Contains(lines[i], "scenario ") {
			if len(msg) > 300 {
				msg = msg[:300] + "…"
			}
			return msg
		}
	}
	return ""
}

// suiteError is the first line of the suite's output that reports an
// error, else its last line.
func suiteError(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

func reasonOf(c check) string {
	s := c.ID + ": " + c.Description
	if c.ErrorMessage != "" {
		s += " (" + c.ErrorMessage + ")"
	}
	return s
}

// readChecks finds the checks.json the suite wrote under dir.
func readChecks(dir string) []check {
	var checks []check
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "checks.json" {
			if b, err := os.ReadFile(p); err == nil {
				var cs []check
				if json.Unmarshal(b, &cs) == nil {
					checks = append(checks, cs...)
				}
			}
		}
		return nil
	})
	return checks
}

// expectations maps "suite-id scenario" to a reason; the suite id may be
// "*" (every suite), a label (every protocol) or LABEL@SPEC.
type expectations struct {
	entries []expectation
}

type expectation struct {
	suite, scenario, reason string
	used                    bool
}

func loadExpected(path string) (*expectations, error) {
	e := &expectations{}
	if path == "" {
		return e, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("%s:%d: want SUITE SCENARIO REASON...", path, i+1)
		}
		e.entries = append(e.entries, expectation{suite: f[0], scenario: f[1], reason: strings.Join(f[2:], " ")})
	}
	return e, nil
}

func (e *expectations) lookup(s suite, scenario string) (string, bool) {
	for i := range e.entries {
		x := &e.entries[i]
		if x.scenario != scenario {
			continue
		}
		if x.suite == "*" || x.suite == s.id() || (x.suite == s.label && !strings.Contains(x.suite, "@")) {
			x.used = true
			return x.reason, true
		}
	}
	return "", false
}

func render(results []result, e *expectations, elapsed time.Duration, filtered bool) string {
	var b strings.Builder
	b.WriteString("| scenario | suite | protocol | result | checks | reason |\n|---|---|---|---|---|---|\n")
	type tally struct{ pass, vacuous, fail, xfail, skip int }
	tallies := map[string]*tally{}
	var order []string
	var stale []string
	for _, r := range results {
		key := r.Suite + " | " + r.Protocol
		t := tallies[key]
		if t == nil {
			t = &tally{}
			tallies[key] = t
			order = append(order, key)
		}
		mark := "pass"
		reason := ""
		switch {
		case r.Skipped:
			mark = "skipped"
			t.skip++
		case r.Passed:
			t.pass++
			if r.Vacuous {
				t.vacuous++
				mark = "pass (vacuous)"
				reason = "the suite passed it with no SUCCESS or FAILURE check; " + strings.Join(r.Reasons, "; ")
			}
			if r.Expected != "" {
				mark += " (listed as expected failure)"
				stale = append(stale, r.Suite+"@"+r.Protocol+" "+r.Scenario)
			}
		case r.Expected != "":
			mark = "FAIL (expected)"
			t.xfail++
			reason = r.Expected + " — suite: " + strings.Join(r.Reasons, "; ")
		default:
			mark = "**FAIL**"
			t.fail++
			reason = strings.Join(r.Reasons, "; ")
		}
		reason = strings.ReplaceAll(reason, "|", "\\|")
		reason = strings.ReplaceAll(reason, "\n", " ")
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Suite, r.Protocol, mark, r.Checks, reason)
	}
	b.WriteString("\n| suite | protocol | scenarios | pass | of which vacuous | fail (expected) | fail (unexpected) | skipped |\n|---|---|---|---|---|---|---|---|\n")
	for _, key := range order {
		t := tallies[key]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d |\n", key, t.pass+t.fail+t.xfail+t.skip, t.pass, t.vacuous, t.xfail, t.fail, t.skip)
	}
	for _, x := range e.entries {
		if !x.used && !filtered {
			stale = append(stale, x.suite+" "+x.scenario+" (matched no scenario run)")
		}
	}
	if len(stale) > 0 {
		b.WriteString("\nExpected-failure entries that did not fail (remove them):\n")
		for _, s := range stale {
			b.WriteString("- " + s + "\n")
		}
	}
	fmt.Fprintf(&b, "\nTotal run time: %s\n", elapsed)
	return b.String()
}
