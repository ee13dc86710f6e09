package lambda

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/capifcore/capif-security/internal/testenv"
)

// The Lambda Runtime Interface Emulator runs a bootstrap on this host the way Lambda does (init
// on the first invoke, the Runtime API, the deadline), without Docker. scripts/tools.sh installs
// it; AWS_LAMBDA_RIE_BIN overrides the path.
func rieBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("AWS_LAMBDA_RIE_BIN")
	if p == "" {
		p = filepath.Join(repoRoot(), ".tools", "bin", "aws-lambda-rie")
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		testenv.Unavailable(t, "the Lambda Runtime Interface Emulator", p+" is missing; run scripts/tools.sh (make tools)")
	}
	return p
}

var (
	bootstrapsOnce sync.Once
	bootstrapsDir  string
	bootstraps     map[string]string // logical id → host bootstrap
	bootstrapsErr  error
)

// TestMain removes the host bootstraps once every test has run.
func TestMain(m *testing.M) {
	code := m.Run()
	if bootstrapsDir != "" {
		_ = os.RemoveAll(bootstrapsDir)
	}
	os.Exit(code)
}

// hostBootstraps builds every function for this host with the flags of the Makefile's
// lambda-build (only GOARCH differs from what sam build makes), once per test binary.
func hostBootstraps(t *testing.T) map[string]string {
	t.Helper()
	bootstrapsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "capif-bootstraps-")
		if err != nil {
			bootstrapsErr = err
			return
		}
		bootstrapsDir = dir
		bootstraps = map[string]string{}
		for _, f := range allFunctions() {
			out := filepath.Join(dir, f.logicalID, "bootstrap")
			cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, "./functions/"+f.dir)
			cmd.Dir = repoRoot()
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				bootstrapsErr = fmt.Errorf("building %s: %v\n%s", f.dir, err, b)
				return
			}
			bootstraps[f.logicalID] = out
		}
	})
	if bootstrapsErr != nil {
		t.Fatal(bootstrapsErr)
	}
	if runtime.GOOS != "linux" {
		t.Skip("the emulator runs Linux bootstraps")
	}
	return bootstraps
}

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// emulated is one function running under its own emulator.
type emulated struct {
	name   string
	url    string
	cmd    *exec.Cmd
	output testenv.Buffer // the emulator's and the bootstrap's stdout and stderr
	mu     sync.Mutex     // guards timing
	timing []time.Duration
}

// startEmulated starts the emulator for one bootstrap: its own invoke address and its own
// internal Runtime API address, so several run side by side. env is the function's environment
// (the emulator passes its own environment to the bootstrap).
func startEmulated(t *testing.T, name, bootstrap string, env map[string]string) *emulated {
	t.Helper()
	rie := rieBinary(t)
	invokePort, apiPort := freePort(t), freePort(t)
	e := &emulated{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", invokePort)}
	e.cmd = exec.Command(rie,
		"--runtime-interface-emulator-address", fmt.Sprintf("127.0.0.1:%d", invokePort),
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--log-level", "error",
		bootstrap)
	e.cmd.Dir = filepath.Dir(bootstrap)
	// The emulator passes its environment on to the bootstrap; env comes last, so it wins (for
	// duplicate keys exec uses the last value).
	e.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_LAMBDA_FUNCTION_NAME=" + name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256", "AWS_LAMBDA_FUNCTION_TIMEOUT=10"}
	for k, v := range env {
		e.cmd.Env = append(e.cmd.Env, k+"="+v)
	}
	e.cmd.Stdout, e.cmd.Stderr = &e.output, &e.output
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.cmd.Process.Kill()
		_ = e.cmd.Wait()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, e.logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", invokePort), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the emulator did not listen: %v\n%s", name, err, e.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *emulated) logs() string { return e.output.String() }

// invoke posts an event and decodes the proxy response; the round trip is recorded.
func (e *emulated) invoke(t *testing.T, payload []byte) events.APIGatewayProxyResponse {
	t.Helper()
	body := e.invokeRaw(t, payload)
	var out events.APIGatewayProxyResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.StatusCode == 0 {
		// A function error ({"errorMessage":…}) is what API Gateway turns into a 502.
		t.Fatalf("%s: not a proxy response (a function error?): %s", e.name, body)
	}
	return out
}

// invokeRaw posts an event and returns what the function answered; the round trip is recorded.
func (e *emulated) invokeRaw(t *testing.T, payload []byte) []byte {
	t.Helper()
	start := time.Now()
	resp, err := http.Post(e.url, "application/json", bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("%s: %v", e.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	e.mu.Lock()
	e.timing = append(e.timing, time.Since(start))
	e.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: the emulator answered %d: %s", e.name, resp.StatusCode, body)
	}
	return body
}

// timings returns the cold (first) and the median warm round trip.
func (e *emulated) timings() (cold, warm time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.timing) == 0 {
		return 0, 0
	}
	w := slices.Clone(e.timing[1:])
	slices.Sort(w)
	if len(w) > 0 {
		warm = w[len(w)/2]
	}
	return e.timing[0], warm
}

var reportRE = regexp.MustCompile(`REPORT RequestId: \S+\s+(?:Init Duration: ([0-9.]+) ms\s+)?Duration: ([0-9.]+) ms`)

// reports parses the emulator's REPORT lines: the init duration and each invoke's duration.
func (e *emulated) reports() (initMS float64, durations []float64) {
	for _, m := range reportRE.FindAllStringSubmatch(e.logs(), -1) {
		if m[1] != "" {
			initMS, _ = strconv.ParseFloat(m[1], 64)
		}
		d, _ := strconv.ParseFloat(m[2], 64)
		durations = append(durations, d)
	}
	return initMS, durations
}

// jsonLogLines returns the bootstrap's log lines; every line that is not the emulator's own
// (START/END/REPORT) must be one JSON object.
func (e *emulated) jsonLogLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.logs()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "START RequestId:") || strings.HasPrefix(line, "END RequestId:") || strings.HasPrefix(line, "REPORT RequestId:") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s: a log line that is not JSON: %q", e.name, line)
			continue
		}
		out = append(out, m)
	}
	return out
}

func header1(resp events.APIGatewayProxyResponse, name string) string {
	if v := resp.MultiValueHeaders[http.CanonicalHeaderKey(name)]; len(v) > 0 {
		return v[0]
	}
	return resp.Headers[name]
}
