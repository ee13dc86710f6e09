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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
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
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // cleanup after a failure only

	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	ready := make(chan struct{})
	go func() {
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if sc.Text() == "READY" {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the peers did not come up; stderr:\n%s", stderr.String())
	}
	eps := endpoints(t, out.String())
	var child int
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "CHILD "); ok {
			child, _ = strconv.Atoi(rest)
		}
	}
	if child == 0 || !alive(child) {
		t.Fatalf("the command's child is not running: %q", out.String())
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 143 {
		t.Errorf("after SIGTERM: %v, want exit code 143", err)
	}
	if took := time.Since(start); took > 15*time.Second {
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
