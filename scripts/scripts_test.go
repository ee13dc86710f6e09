// Package scripts tests the shell scripts the test suite relies on. Each test starts its own
// peers through with-peers.sh, so it runs where the pinned tools are installed: under `make
// test` (itself inside with-peers.sh), skipped elsewhere and failing under CI=true.
package scripts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
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
	"github.com/capifcore/capif-security/shared/store/embedded"
)

func withPeers(t *testing.T, tmp string, args ...string) *exec.Cmd {
	t.Helper()
	testenv.DynamoDBEndpoint(t) // the tools are installed and java works: the outer run is up
	cmd := exec.Command("bash", append([]string{filepath.Join(testenv.RepoRoot(), "scripts", "with-peers.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "CAPIF_KEEP_PEER_LOGS=")
	return cmd
}

// endpoints parses the "DDB KMS" line the child command prints.
func endpoints(t *testing.T, out string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "ENDPOINTS "); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("the command did not print its endpoints; output:\n%s", out)
	return nil
}

func listening(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func logDirs(t *testing.T, tmp string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(tmp, "capif-peers.*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// probe prints the endpoints and environment, and checks both peers answer real API calls.
const probe = `echo "ENDPOINTS $AWS_ENDPOINT_URL_DYNAMODB $AWS_ENDPOINT_URL_KMS"
echo "ENV $AWS_REGION $AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY $AWS_EC2_METADATA_DISABLED"
curl -sf -X POST -H 'X-Amz-Target: TrentService.ListKeys' -H 'Content-Type: application/x-amz-json-1.1' -d '{}' "$AWS_ENDPOINT_URL_KMS" >/dev/null && echo KMS-OK
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-Amz-Target: DynamoDB_20120810.ListTables' -H 'Content-Type: application/x-amz-json-1.0' -d '{}' "$AWS_ENDPOINT_URL_DYNAMODB")
[ "$code" != 000 ] && echo DDB-OK
`

func TestWithPeers(t *testing.T) {
	tests := []struct {
		name     string
		exit     string
		wantCode int
		wantLogs bool // logs kept and tails printed
	}{
		{"success", "exit 0", 0, false},
		{"failure propagates the exit code", "exit 7", 7, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			cmd := withPeers(t, tmp, "bash", "-c", probe+tc.exit)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			out := stdout.String()
			for _, want := range []string{"ENV us-east-1 test test true", "KMS-OK", "DDB-OK"} {
				if !strings.Contains(out, want) {
					t.Errorf("the command's output lacks %q:\n%s", want, out)
				}
			}
			for _, ep := range endpoints(t, out) {
				if !strings.HasPrefix(ep, "http://127.0.0.1:") {
					t.Errorf("endpoint %q is not on loopback", ep)
				}
				if listening(ep) {
					t.Errorf("%s still accepts connections after with-peers.sh returned", ep)
				}
			}
			tails := strings.Contains(stderr.String(), "last lines of")
			if kept := len(logDirs(t, tmp)) > 0; kept != tc.wantLogs || tails != tc.wantLogs {
				t.Errorf("logs kept %v, tails printed %v; want both %v. stderr:\n%s", kept, tails, tc.wantLogs, stderr.String())
			}
		})
	}
}

// alive reports whether pid runs (a zombie waiting for a reaper counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestWithPeersInterrupted: SIGTERM to the script stops the command, what the command started,
// and both peers, at once.
func TestWithPeersInterrupted(t *testing.T) {
	tmp := t.TempDir()
	cmd := withPeers(t, tmp, "bash", "-c", probe+`sleep 120 & echo "CHILD $!"; echo READY; wait`)
	lines, stderr := start(t, cmd)
	eps := strings.Fields(waitFor(t, lines, "ENDPOINTS ", 2*time.Minute, stderr))
	child, _ := strconv.Atoi(waitFor(t, lines, "CHILD ", 2*time.Minute, stderr))
	waitFor(t, lines, "READY", 2*time.Minute, stderr)
	if child == 0 || !alive(child) {
		t.Fatalf("the command's child %d is not running", child)
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 143 {
		t.Errorf("after SIGTERM: %v, want exit code 143", err)
	}
	if took := time.Since(sent); took > 15*time.Second {
		t.Errorf("stopping took %v", took)
	}
	for _, ep := range eps {
		if listening(ep) {
			t.Errorf("%s still accepts connections after SIGTERM", ep)
		}
	}
	if alive(child) {
		t.Errorf("the command's child %d survived", child)
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
}

// TestWithPeersServe: with --serve, Ctrl-C is a server's normal end: the command gets SIGTERM,
// its own status (0 here) is the script's, and neither logs nor folders are left.
func TestWithPeersServe(t *testing.T) {
	tmp := t.TempDir()
	cmd := withPeers(t, tmp, "--serve", "bash", "-c", `trap 'echo STOPPING; exit 0' TERM; echo READY; sleep 120 & wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's foreground group
	lines, stderr := start(t, cmd)
	waitFor(t, lines, "READY", 2*time.Minute, stderr)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after Ctrl-C: %v, want exit 0; stderr:\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "last lines of") || len(logDirs(t, tmp)) > 0 {
		t.Errorf("peer logs printed or kept after a clean stop:\n%s", stderr.String())
	}
}

// start starts cmd and sends each line of its stdout; its stderr is kept. Whatever is still
// running when the test ends is killed: the process group when cmd has one of its own.
func start(t *testing.T, cmd *exec.Cmd) (<-chan string, *testenv.Buffer) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		} else {
			_ = cmd.Process.Kill()
		}
	})
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch, stderr
}

// waitFor returns the rest of the first line starting with prefix.
func waitFor(t *testing.T, lines <-chan string, prefix string, timeout time.Duration, stderr fmt.Stringer) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before %q; stderr:\n%s", prefix, stderr)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return rest
			}
		case <-deadline:
			t.Fatalf("no %q within %v; stderr:\n%s", prefix, timeout, stderr)
		}
	}
}

// makeRun starts `make TARGET` as in a terminal (its own process group) with the runner on a
// free port and dir, and returns it once the runner listens, with the runner's URL.
func makeRun(t *testing.T, target, dir, tmp string) (*exec.Cmd, string, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-C", testenv.RepoRoot(), target,
		"RUN_FLAGS=-addr 127.0.0.1:0 -log-format json -data "+dir)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "CAPIF_KEEP_PEER_LOGS=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	lines, stderr := start(t, cmd)
	url := waitFor(t, lines, "capif-local listening on ", 3*time.Minute, stderr)
	return cmd, url, stderr
}

// stoppedCleanly checks that nothing of the run is left: the port closed, the store lock free,
// no process of the group alive, the runner's own stop record logged.
func stoppedCleanly(t *testing.T, cmd *exec.Cmd, url, dir string, stderr fmt.Stringer) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("make still runs 30s after the signal; stderr:\n%s", stderr)
	}
	if listening(url) {
		t.Errorf("%s still accepts connections", url)
	}
	if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
		t.Errorf("a process of make's group survived")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("the runner did not shut down gracefully; stderr:\n%s", stderr)
	}
	db, err := embedded.Open(filepath.Join(dir, "capif.db"))
	if err != nil {
		t.Errorf("the store is still locked: %v", err)
		return
	}
	db.Close()
}

// TestMakeRunStops: `make run` stops cleanly on Ctrl-C and on SIGTERM to make (what `make run &`
// then `kill %1` or `kill PID` do).
func TestMakeRunStops(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		testenv.Unavailable(t, "make", "apt-get install -y make")
	}
	for _, tc := range []struct {
		name  string
		group bool
		sig   syscall.Signal
	}{
		{"SIGTERM to make", false, syscall.SIGTERM},
		{"Ctrl-C", true, syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd, url, stderr := makeRun(t, "run", dir, t.TempDir())
			pid := cmd.Process.Pid
			if tc.group {
				pid = -pid
			}
			if err := syscall.Kill(pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			stoppedCleanly(t, cmd, url, dir, stderr)
		})
	}
}

// TestMakeRunAWSStops: `make run-aws` on Ctrl-C stops the runner and both peers, dumps no peer
// logs, leaves no temporary folder and fails nothing; its runner logs no checksum WARN.
func TestMakeRunAWSStops(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	dir, tmp := t.TempDir(), t.TempDir()
	cmd, url, stderr := makeRun(t, "run-aws", dir, tmp)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("make run-aws still runs 60s after Ctrl-C; stderr:\n%s", stderr)
	}
	out := stderr.String()
	for _, bad := range []string{"last lines of", "peer logs kept", "command exited with status", "Error", "expected checksum"} {
		if strings.Contains(out, bad) {
			t.Errorf("stderr has %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, `"msg":"stopped"`) {
		t.Errorf("the runner did not shut down gracefully:\n%s", out)
	}
	if dirs := logDirs(t, tmp); len(dirs) > 0 {
		t.Errorf("temporary folders left: %v", dirs)
	}
	if listening(url) {
		t.Errorf("%s still accepts connections", url)
	}
	if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
		t.Errorf("a process of make's group survived")
	}
}

// TestWalkthroughFilesAreIgnored: every file README's walkthrough writes (tee FILE, > FILE) is
// one git ignores, so following it leaves the clone clean.
func TestWalkthroughFilesAreIgnored(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git", "apt-get install -y git")
	}
	root := testenv.RepoRoot()
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		testenv.Unavailable(t, "a git checkout", "run from a clone")
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Walkthrough")
	if !ok {
		t.Fatal("README.md has no walkthrough")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	written := regexp.MustCompile(`(?:\btee|[^2&]>)\s+([^\s|;&)]+)`).FindAllStringSubmatch(section, -1)
	if len(written) == 0 {
		t.Fatal("the walkthrough writes no file: this test looks for tee FILE and > FILE")
	}
	for _, m := range written {
		path := m[1]
		if strings.HasPrefix(path, "/dev/") {
			continue
		}
		cmd := exec.Command("git", "check-ignore", "-q", "--no-index", path)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			t.Errorf("the walkthrough writes %s, which git does not ignore (%v)", path, err)
		}
	}
}
