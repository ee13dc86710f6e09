package scripts

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
)

// The README's Layout names every package of the module (functions/* and a "scripts, tests/lambda"
// pair name several at once), so a newcomer finds each one there.
func TestREADMELayoutNamesEveryPackage(t *testing.T) {
	root := testenv.RepoRoot()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(b), "## Layout")
	if !ok {
		t.Fatal(`README.md has no "## Layout" section`)
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	named := map[string]bool{}
	for _, line := range strings.Split(layout, "\n") {
		first, _, _ := strings.Cut(line, "  ") // the names, before the description
		for _, name := range strings.Split(first, ",") {
			named[strings.TrimSpace(name)] = true
		}
	}
	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(pkg, "github.com/capifcore/capif-security/")
		if named[rel] || strings.HasPrefix(rel, "functions/") && named["functions/*"] {
			continue
		}
		t.Errorf("README.md's Layout does not name %s", rel)
	}
}

// make alone lists the targets and exits: it never starts the server.
func TestMakeAlonePrintsTheTargets(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		testenv.Unavailable(t, "make", "install GNU make")
	}
	cmd := exec.Command("make", "--no-print-directory")
	cmd.Dir = testenv.RepoRoot()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("make alone did not return within 30 s: it started something")
	}
	if err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	for _, target := range []string{"make run ", "make test ", "make quick ", "make unit "} {
		if !strings.Contains(string(out), target) {
			t.Errorf("make alone does not list %q:\n%s", target, out)
		}
	}
}

// The README's walkthrough, pasted: every sh block of its section in order, in one shell with
// job control as a terminal has, in a copy of the checkout (the shared build cache; a fresh one
// under CAPIF_STRESS=1, as on a new machine). Each step gets the answer the README says, the
// blocks wait for what they start, and its last step frees every port it used.
func TestWalkthroughAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the whole walkthrough (make test runs it)")
	}
	for _, tool := range []string{"curl", "python3", "git", "make", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool, "install "+tool+" (README: Requirements)")
		}
	}
	ports := []string{"127.0.0.1:8443", "127.0.0.1:9090", "127.0.0.1:9443"}
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", p, time.Second); err == nil {
			_ = c.Close()
			t.Fatalf("%s is in use: the walkthrough needs it free", p)
		}
	}
	root := testenv.RepoRoot()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## Walkthrough")
	section, _, _ = strings.Cut(section, "\n## ")
	var script strings.Builder
	script.WriteString("set -m\n") // job control: background jobs and kill %N as in a terminal
	for _, block := range regexp.MustCompile("(?s)\n( *)```sh\n(.*?)\n *```").FindAllStringSubmatch(section, -1) {
		for _, line := range strings.Split(block[2], "\n") {
			script.WriteString(strings.TrimPrefix(line, block[1]) + "\n")
		}
	}
	script.WriteString("echo WALKTHROUGH-END\n")

	dir := copyCheckout(t, root)
	cmd := exec.Command("setsid", "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CAPIF_ADDR=", "CAPIF_DATA=", "CAPIF_STORE=", "CAPIF_SIGNER=", "CAPIF_REGISTRY=")
	if os.Getenv("CAPIF_STRESS") == "1" {
		cmd.Env = append(cmd.Env, "GOCACHE="+t.TempDir())
	}
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the walkthrough failed: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Minute):
		t.Fatalf("the walkthrough did not end within 10 minutes:\n%s", out.String())
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`capif-local listening on https://127\.0\.0\.1:8443`),
		regexp.MustCompile(`HTTP/[0-9.]+ 201`),                                 // 1: the context
		regexp.MustCompile(`"access_token":"`),                                 // 2: the token
		regexp.MustCompile(`valid token for aef-1/monitoring-event, bound to`), // 3
		regexp.MustCompile(`aef aef-1 serving monitoring-event on https://127\.0\.0\.1:9443`),
		regexp.MustCompile(`HTTP/[0-9.]+ 401[\s\S]*invalid_token`), // 4: the replayed token
		regexp.MustCompile(`webhook-id: \S+ \{`),                   // 6: the notifications
		regexp.MustCompile(`HTTP/[0-9.]+ 204`),
		regexp.MustCompile(`HTTP/[0-9.]+ 204[\s\S]*HTTP/[0-9.]+ 401[\s\S]*error_description="revoked"`), // 6: pushed to the AEF
		regexp.MustCompile(`WALKTHROUGH-END`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the walkthrough's output lacks %s:\n%s", want, text)
		}
	}
	for _, p := range ports {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", p, time.Second)
			if err != nil {
				break
			}
			_ = c.Close()
			if time.Now().After(deadline) {
				t.Errorf("%s still accepts connections after the last step", p)
				break
			}
		}
	}
}

// copyCheckout copies the files git tracks (as they are in the working tree) to a new directory.
func copyCheckout(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	list, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted in the working tree
			}
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(root, name))
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The documents agree with the code on what drifts: the Go version is go.mod's; no document
// states a bootstrap size (BENCHMARKS.md keeps the measured ones), only the bound the Makefile
// enforces.
func TestDocsMatchTheCode(t *testing.T) {
	root := testenv.RepoRoot()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(read("go.mod"))[1]
	maxBytes := regexp.MustCompile(`(?m)^LAMBDA_MAX_BYTES\s*:=\s*(\d+)$`).FindStringSubmatch(read("Makefile"))[1]
	for _, name := range []string{"README.md", "docs/deploy.md"} {
		doc := read(name)
		for _, m := range regexp.MustCompile(`\bGo (1\.\d+(?:\.\d+)?)`).FindAllStringSubmatch(doc, -1) {
			if m[1] != goVersion {
				t.Errorf("%s names Go %s; go.mod says %s", name, m[1], goVersion)
			}
		}
		if !strings.Contains(doc, "Go "+goVersion) && name == "README.md" {
			t.Errorf("%s does not name Go %s", name, goVersion)
		}
		if m := regexp.MustCompile(`\d{1,3}(,\d{3}){2} bytes|\d+\.\d+(–\d+\.\d+)? MiB`).FindString(doc); m != "" {
			t.Errorf("%s states a size (%q): state the bound, or measure in BENCHMARKS.md", name, m)
		}
		for _, m := range regexp.MustCompile(`(\d+) MiB (?:budget|bound)|(?:over|under|above) (\d+) MiB`).FindAllStringSubmatch(doc, -1) {
			n := m[1] + m[2]
			if want := fmt.Sprint(mustAtoi(t, maxBytes) >> 20); n != want {
				t.Errorf("%s states a %s MiB bound; the Makefile's is %s MiB", name, n, want)
			}
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
