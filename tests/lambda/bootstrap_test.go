package lambda

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/settings"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
)

// bootstrapBudget is the size limit of one bootstrap (the Makefile's LAMBDA_MAX_BYTES).
const bootstrapBudget = 10 << 20

// `make build-<LogicalId>` — what sam build runs — makes a static, stripped linux/arm64
// bootstrap within the budget for every function, and refuses one over the budget.
func TestBootstrapsAsSAMBuildsThem(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: cross-compiles the six bootstraps")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is required to build the bootstraps as sam build does")
	}
	for _, f := range allFunctions() {
		t.Run(f.logicalID, func(t *testing.T) {
			dir := t.TempDir()
			out, err := exec.Command("make", "--no-print-directory", "-C", repoRoot(), "build-"+f.logicalID, "ARTIFACTS_DIR="+dir).CombinedOutput()
			if err != nil {
				t.Fatalf("make build-%s: %v\n%s", f.logicalID, err, out)
			}
			bin := filepath.Join(dir, "bootstrap")
			fi, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() > bootstrapBudget {
				t.Errorf("bootstrap is %d bytes, over the %d-byte budget", fi.Size(), bootstrapBudget)
			}
			if fi.Mode()&0o111 == 0 {
				t.Error("bootstrap is not executable")
			}
			e, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if e.Machine != elf.EM_AARCH64 || e.Class != elf.ELFCLASS64 {
				t.Errorf("bootstrap is %v/%v, want arm64 (template Architectures: arm64)", e.Machine, e.Class)
			}
			for _, p := range e.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("bootstrap is dynamically linked (CGO_ENABLED=0 expected)")
				}
			}
			if e.Section(".symtab") != nil {
				t.Error("bootstrap is not stripped (-ldflags -s -w expected)")
			}
			t.Logf("%s: %d bytes (%.2f MiB)", f.logicalID, fi.Size(), float64(fi.Size())/(1<<20))
		})
	}
	t.Run("over budget", func(t *testing.T) {
		dir := t.TempDir()
		out, err := exec.Command("make", "--no-print-directory", "-C", repoRoot(), "build-ObtainApiInvokerInfoFunction",
			"ARTIFACTS_DIR="+dir, "LAMBDA_MAX_BYTES=1000000").CombinedOutput()
		if err == nil {
			t.Fatalf("a 1 MB budget was accepted:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err == nil {
			t.Error("the oversized bootstrap was left for SAM to package")
		}
		if !strings.Contains(string(out), "over the 1000000-byte budget") {
			t.Errorf("no budget message:\n%s", out)
		}
	})
}

// fakeRuntime is the Lambda Runtime API as a bootstrap sees it: the first GET …/next marks the
// end of init and waits for the test to hand it an event; the answer is captured.
type fakeRuntime struct {
	srv       *httptest.Server
	initDone  chan struct{}
	events    chan []byte
	responses chan []byte
	initErr   chan string
	once      sync.Once
	deadline  time.Duration // from the invocation's start (Lambda-Runtime-Deadline-Ms)
}

func newFakeRuntime(t *testing.T) *fakeRuntime {
	t.Helper()
	rt := &fakeRuntime{initDone: make(chan struct{}), events: make(chan []byte), responses: make(chan []byte, 1), initErr: make(chan string, 1),
		deadline: 10 * time.Second}
	rt.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/2018-06-01/runtime/invocation/next":
			rt.once.Do(func() { close(rt.initDone) })
			select {
			case ev := <-rt.events:
				w.Header().Set("Lambda-Runtime-Aws-Request-Id", "req-1")
				w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(rt.deadline).UnixMilli(), 10))
				w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:test")
				_, _ = w.Write(ev)
			case <-r.Context().Done():
			}
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/response"):
			b, _ := io.ReadAll(r.Body)
			rt.responses <- b
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/error"):
			b, _ := io.ReadAll(r.Body)
			rt.initErr <- r.URL.Path + " " + string(b)
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(rt.srv.Close)
	return rt
}

// awsRecorder stands in for S3, DynamoDB and KMS: it serves the truststore object and answers
// every other request with a server error, and records each request.
type awsRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (a *awsRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	what := r.Method + " " + r.URL.Path
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		what = target
	}
	a.mu.Lock()
	a.seen = append(a.seen, what)
	a.mu.Unlock()
	if r.Method == http.MethodGet && r.URL.Path == "/trust-bucket/mtls/truststore.pem" {
		b, _ := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", "ca.pem"))
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(`{"__type":"InternalServerError","message":"stand-in"}`))
}

func (a *awsRecorder) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// A bootstrap makes no AWS call during init (its cold start): configuration, clients and the
// proxy are built, then it asks the Runtime API for work having sent nothing to S3, DynamoDB or
// KMS. The first request reads the truststore (S3), and with DynamoDB or KMS failing the function
// still answers: a problem+json 503, never a function error. The worker's first run scans the
// outbox (no truststore: it serves no request) and, the outbox unreadable, fails the invocation:
// what its Errors alarm counts.
func TestBootstrapInitMakesNoAWSCall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the six bootstraps for this host (make unit and make test run it)")
	}
	bs := hostBootstraps(t)
	firstEvent := map[string]string{
		"ObtainSecurityMethodFunction": "obtain-security-method/put.json",
		"ObtainAuthorizationFunction":  "obtain-authorization/jwks.json",
		"ObtainApiInvokerInfoFunction": "obtain-invoker-info/get.json",
		"RevokeAuthorizationFunction":  "revoke-authorization/revoke-all.json",
	}
	tp := loadTemplate(t)
	for _, w := range workers {
		firstEvent[w.logicalID] = w.event
	}
	for _, f := range allFunctions() {
		t.Run(f.logicalID, func(t *testing.T) {
			_, isWorker := workerByID(f.logicalID)
			rec := &awsRecorder{}
			awsSrv := httptest.NewServer(rec)
			defer awsSrv.Close()
			rt := newFakeRuntime(t)
			if isWorker {
				// The template's Timeout: a run with less than its tail left claims nothing.
				rt.deadline = time.Duration(tp.functionProps(tp.resources("AWS::Serverless::Function")[f.logicalID])["Timeout"].(int)) * time.Second
			}
			ds := dataset{tables: sampleTables(), keyID: sampleRefs["SigningKey"], rsaID: sampleRefs["SigningKeyRsa"], wrapID: sampleRefs["WrappingKey"]}
			env := functionEnv(t, f.logicalID, ds)
			env["CAPIF_TRUSTSTORE_FILE"] = ""
			env["CAPIF_TRUSTSTORE_URI"] = "s3://trust-bucket/mtls/truststore.pem"
			env["CAPIF_TRUSTSTORE_VERSION"] = sampleRefs["TruststoreVersion"]
			for _, svc := range []string{"S3", "DYNAMODB", "KMS"} {
				env["AWS_ENDPOINT_URL_"+svc] = awsSrv.URL
			}
			env["AWS_REGION"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "us-east-1", "test", "test"
			env["AWS_LAMBDA_RUNTIME_API"] = strings.TrimPrefix(rt.srv.URL, "http://")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := exec.CommandContext(ctx, bs[f.logicalID])
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var out testenv.Buffer // read while the process writes
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = cmd.Wait() }()

			select {
			case <-rt.initDone:
				// Process start, Go runtime and package init, main's wiring, first poll.
				t.Logf("init (exec to the first Runtime API poll): %.1f ms", ms(time.Since(start)))
			case e := <-rt.initErr:
				t.Fatalf("init failed: %s\n%s", e, out.String())
			case <-time.After(10 * time.Second):
				t.Fatalf("the bootstrap never asked for an invocation\n%s", out.String())
			}
			if got := rec.requests(); len(got) != 0 {
				t.Fatalf("AWS calls during init: %v", got)
			}

			payload, err := os.ReadFile(filepath.Join(eventsDir(), firstEvent[f.logicalID]))
			if err != nil {
				t.Fatal(err)
			}
			rt.events <- payload
			if isWorker {
				// What a failed run reads first, and the line it logs: the outbox's Scan (the
				// delivery worker), the key set's BatchGetItem (the rotation function).
				w, _ := workerByID(f.logicalID)
				firstRead, failed := "DynamoDB_20120810.Scan", `"msg":"delivery run failed"`
				if w.cmd == settings.Rotator {
					firstRead, failed = "DynamoDB_20120810.BatchGetItem", `"msg":"key rotation failed"`
				}
				select {
				case e := <-rt.initErr:
					if !strings.Contains(e, "/invocation/req-1/error") {
						t.Errorf("%s, want the invocation's error", e)
					}
				case b := <-rt.responses:
					t.Errorf("the run succeeded with its store unreadable: %s", b)
				case <-time.After(30 * time.Second):
					t.Fatalf("no answer\n%s", out.String())
				}
				got := rec.requests()
				if len(got) == 0 || slices.ContainsFunc(got, func(r string) bool { return r != firstRead }) {
					t.Errorf("the run's AWS requests %v: want only %s (every attempt failed)", got, firstRead)
				}
				// The line is written before the error is posted, but reaches out through a pipe.
				for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), failed); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Errorf("no %s line:\n%s", failed, out.String())
						break
					}
				}
				t.Logf("first run's AWS requests: %v", got)
				return
			}
			var body []byte
			select {
			case body = <-rt.responses:
			case e := <-rt.initErr:
				t.Fatalf("function error (API Gateway: 502): %s", e)
			case <-time.After(15 * time.Second):
				t.Fatalf("no answer\n%s", out.String())
			}
			var resp events.APIGatewayProxyResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("answer %s: %v", body, err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503 (the stand-in AWS fails): %s", resp.StatusCode, resp.Body)
			}
			checkShape(t, f.logicalID, resp)
			got := rec.requests()
			if len(got) < 2 || got[0] != "GET /trust-bucket/mtls/truststore.pem" {
				t.Errorf("requests after the first invocation %v: want the truststore read first, then the back end", got)
			}
			t.Logf("first invocation's AWS requests: %s", fmt.Sprint(got))
		})
	}
}

func sampleTables() ddbstore.Tables {
	return ddbstore.Tables{Contexts: sampleRefs["ContextsTable"], Registry: sampleRefs["RegistryTable"], Outbox: sampleRefs["OutboxTable"]}
}
