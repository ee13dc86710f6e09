package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
