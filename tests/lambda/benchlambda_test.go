package lambda

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/envelope"
)

var benchLambda = flag.Bool("bench-lambda", false, "TestLambdaTokenLatency: 1,000 warm tokens and 10 cold starts per signer, and the table written into BENCHMARKS.md (make bench-lambda)")

// The template's memory, and the CPU share it buys (one vCPU at 1,769 MB).
const (
	lambdaMemoryGB = 0.25
	lambdaVCPU     = 256.0 / 1769
)

// signerCase is one signer of the token function as a deployment configures it.
type signerCase struct {
	name, signer, alg string
}

var signerCases = []signerCase{
	{"kms ES256", settings.SignerKMS, capif.ES256},
	{"kms RS256", settings.SignerKMS, capif.RS256},
	{"kms-envelope ES256", settings.SignerKMSEnvelope, capif.ES256},
	{"kms-envelope RS256", settings.SignerKMSEnvelope, capif.RS256},
}

// The cost model of a million tokens (BENCHMARKS.md, "What a million tokens cost", names each
// price's source): Lambda requests and arm64 GB-seconds, API Gateway per request, DynamoDB's
// strongly consistent read units (caller, context, the certificate's revocation key), KMS per
// 10,000 requests.
const (
	lambdaPerMillion = 0.20
	lambdaPerGBs     = 0.0000133334
	restPerMillion   = 3.50
	httpPerMillion   = 1.00
	rruPerMillion    = 0.125
	tokenRRU         = 3
	kmsECCSign       = 0.15 // per 10,000 asymmetric requests, but RSA_2048 Sign
	kmsRSASign       = 0.03 // per 10,000 Sign on RSA_2048 keys
	kmsDecrypt       = 0.03 // per 10,000
	coldShare        = 0.01 // cold starts per invocation ("under 1 %"); 0.1 % shown beside
)

// costs is a million tokens of sc at billed duration d: Lambda, DynamoDB, KMS (at coldShare for
// kms-envelope's Decrypt), and the ceiling KMS puts on the token rate.
func costs(sc signerCase, d time.Duration, cold float64) (lambda, dynamo, kms float64, ceiling string) {
	lambda = lambdaPerMillion + 1e6*d.Seconds()*lambdaMemoryGB*lambdaPerGBs
	dynamo = tokenRRU * rruPerMillion
	switch {
	case sc.signer == settings.SignerKMSEnvelope:
		kms, ceiling = 1e6*cold/1e4*kmsDecrypt, "none from KMS per token"
	case sc.alg == capif.RS256:
		kms, ceiling = 1e6/1e4*kmsRSASign, "1,000/s: the RSA bucket"
	default:
		kms, ceiling = 1e6/1e4*kmsECCSign, "1,000/s: the ECC bucket, shared with every ECC Sign (the CCF's TLS handshakes too)"
	}
	return lambda, dynamo, kms, ceiling
}

// latency is what one signer measured.
type latency struct {
	p50, p99             time.Duration // warm round trips
	coldMedian, coldMax  time.Duration // first invocation of a fresh bootstrap
	cpuPerInvocation     time.Duration // the bootstrap's user + system time per warm invocation
	warmCount, coldCount int
}

// billed is the duration Lambda would bill at 256 MB: the warm median, with the CPU time
// stretched to the 0.145 vCPU that 256 MB buys (the host ran it on a whole core).
func (l latency) billed() time.Duration {
	return l.p50 + time.Duration(float64(l.cpuPerInvocation)*(1/lambdaVCPU-1))
}

// TestLambdaTokenLatency runs the token function's bootstrap under the Lambda emulator against
// DynamoDB Local and local-kms, for each signer: warm round trips (p50, p99), cold starts (a
// fresh bootstrap's first token: init, the first key-set read, and its Decrypt or Sign) and
// the bootstrap's CPU time per warm token. By default a few of each, checking that every
// signer issues tokens through the real bootstrap; with -bench-lambda (make bench-lambda) 1,000
// warm tokens and 10 cold starts, written into BENCHMARKS.md between its bench-lambda markers.
func TestLambdaTokenLatency(t *testing.T) {
	rieBinary(t)
	warmN, coldN := 20, 2
	if *benchLambda {
		warmN, coldN = 1000, 10
	}
	bs := hostBootstraps(t)
	ds := newDataset(t)
	createTokenContext(t, ds)
	tokenEvent := eventBytes(t, tokenRequest(t))
	results := map[string]latency{}
	for _, sc := range signerCases {
		t.Run(sc.name, func(t *testing.T) {
			env := signerEnv(t, ds, sc)
			token := func(e *emulated) {
				t.Helper()
				resp := e.invoke(t, tokenEvent)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("token: %d %s", resp.StatusCode, resp.Body)
				}
				var tok capif.AccessTokenRsp
				if err := json.Unmarshal([]byte(resp.Body), &tok); err != nil || !strings.Contains(tokenHeader(tok.AccessToken), `"alg":"`+sc.alg+`"`) {
					t.Fatalf("token %s: %v, want alg %s", resp.Body, err, sc.alg)
				}
			}
			var l latency
			var colds []time.Duration
			for range coldN {
				e := startEmulated(t, "ObtainAuthorizationFunction", bs["ObtainAuthorizationFunction"], env)
				token(e)
				cold, _ := e.timings()
				colds = append(colds, cold)
				e.close()
			}
			slices.Sort(colds)
			l.coldMedian, l.coldMax, l.coldCount = colds[len(colds)/2], colds[len(colds)-1], len(colds)
			e := startEmulated(t, "ObtainAuthorizationFunction", bs["ObtainAuthorizationFunction"], env)
			token(e) // the cold start, not counted
			cpu0 := e.bootstrapCPU(t)
			e.mu.Lock()
			e.timing = nil
			e.mu.Unlock()
			for range warmN {
				token(e)
			}
			cpu := e.bootstrapCPU(t) - cpu0
			e.mu.Lock()
			warm := slices.Sorted(slices.Values(e.timing))
			e.mu.Unlock()
			l.p50, l.p99, l.warmCount = warm[len(warm)/2], warm[int(math.Ceil(float64(len(warm))*0.99))-1], len(warm)
			l.cpuPerInvocation = cpu / time.Duration(warmN)
			if l.p50 <= 0 || l.coldMedian < l.p50 {
				t.Errorf("warm p50 %v, cold median %v: a cold start is slower than a warm token", l.p50, l.coldMedian)
			}
			t.Logf("%s: warm p50 %v p99 %v; cold median %v worst %v; CPU %v per token; billed at 256 MB ≈ %v",
				sc.name, l.p50, l.p99, l.coldMedian, l.coldMax, l.cpuPerInvocation, l.billed())
			results[sc.name] = l
		})
	}
	if *benchLambda && !t.Failed() {
		writeBenchLambda(t, results)
	}
}

// signerEnv is the token function's environment from the template for one signer, on ds. The
// key set is made to match: empty for kms (CAPIF_KMS_KEY_IDS sign), a wrapped key of the
// algorithm signing at once for kms-envelope.
func signerEnv(t *testing.T, ds dataset, sc signerCase) map[string]string {
	t.Helper()
	env := functionEnv(t, "ObtainAuthorizationFunction", ds)
	env["CAPIF_SIGNER"], env["CAPIF_TOKEN_ALG"] = sc.signer, sc.alg
	env["CAPIF_KMS_KEY_IDS"] = ds.keyID
	if sc.alg == capif.RS256 {
		env["CAPIF_KMS_KEY_IDS"] = ds.rsaID + "," + ds.keyID
	}
	set, err := ds.store.LoadKeySet(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sc.signer == settings.SignerKMS {
		env["CAPIF_KMS_WRAPPING_KEY"] = ""
		if len(set.Keys) != 0 {
			t.Fatal("the kms cases run first, on an empty key set")
		}
		return env
	}
	cfg := settings.Config{Stack: env["CAPIF_STACK"], KMSWrappingKey: env["CAPIF_KMS_WRAPPING_KEY"], TokenAlg: sc.alg,
		KeySetRefresh: time.Minute, TokenTTL: 10 * time.Minute}
	m, err := kmsapp.Manager(app.Input{Settings: cfg, KeySet: ds.store,
		AWS: func() (aws.Config, error) { return awsconfig.LoadDefaultConfig(context.Background()) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) == 0 {
		if _, _, err := m.Bootstrap(context.Background()); err != nil {
			t.Fatal(err)
		}
		return env
	}
	// A key of the other algorithm signs: rotate, and hand over at once.
	old, _ := set.Signer(time.Now())
	if _, err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := (envelope.Manager{Keys: ds.store, Windows: m.Windows}).Retire(context.Background(), old.Kid, true); err != nil {
		t.Fatal(err)
	}
	return env
}

// createTokenContext gives invoker-2 a security context with OAUTH at aef-1, through the
// security-method function in process.
func createTokenContext(t *testing.T, ds dataset) {
	t.Helper()
	f, _ := functionByID("ObtainSecurityMethodFunction")
	env := functionEnv(t, f.logicalID, ds)
	cfg, err := lambdaapp.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	fn, err := lambdaapp.New(context.Background(), cfg, f.build, lambdaapp.Options{Logger: slog.New(slog.DiscardHandler),
		Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	body := `{"notificationDestination":"https://invoker.example.com/n","securityInfo":[{"aefId":"aef-1","apiId":"api-monitoring-event","prefSecurityMethods":["OAUTH"]}]}`
	resp, err := fn.Handle(context.Background(), eventBytes(t, apigwevent.Request{Method: http.MethodPut, Resource: invokerRes,
		Params: id("invoker-2"), Header: jsonCT(), Body: body, ClientCertPEM: devCert(t, "clients/invoker-2.pem")}))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %d %s", err, resp.StatusCode, resp.Body)
	}
}

// tokenRequest is invoker-2's token request for the context createTokenContext gives it.
func tokenRequest(t *testing.T) apigwevent.Request {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"invoker-2"}, "client_secret": {"dev-secret-invoker-2"},
		"scope": {"3gpp#aef-1:monitoring-event"}}
	return apigwevent.Request{Method: http.MethodPost, Resource: tokenRes, Params: map[string]string{"securityId": "invoker-2"},
		Header: formCT(), Body: form.Encode(), ClientCertPEM: devCert(t, "clients/invoker-2.pem")}
}

func tokenHeader(tok string) string {
	head, _, _ := strings.Cut(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(head)
	return string(b)
}

// close stops the emulator and its bootstrap.
func (e *emulated) close() {
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
}

// bootstrapCPU is the user + system CPU time of the bootstrap the emulator runs (its child
// process), from /proc.
func (e *emulated) bootstrapCPU(t *testing.T) time.Duration {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parent := strconv.Itoa(e.cmd.Process.Pid)
	for _, d := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime stime: fields after the comm's closing parenthesis.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 || f[1] != parent {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(utime+stime) * time.Second / clockTicks
	}
	t.Fatalf("%s: no bootstrap process under the emulator (pid %s)", e.name, parent)
	return 0
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux port Go supports.
const clockTicks = 100

// writeBenchLambda replaces the table between BENCHMARKS.md's bench-lambda markers.
func writeBenchLambda(t *testing.T, results map[string]latency) {
	t.Helper()
	path := filepath.Join(repoRoot(), "BENCHMARKS.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- bench-lambda:begin -->", "<!-- bench-lambda:end -->"
	i, j := strings.Index(string(b), begin), strings.Index(string(b), end)
	if i < 0 || j < i {
		t.Fatalf("BENCHMARKS.md has no %s … %s markers", begin, end)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%s\n", begin)
	fmt.Fprintf(&out, "Measured %s on %s (%d cores), %s, `make bench-lambda`: the token function's bootstrap under the Lambda\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&out, "emulator against DynamoDB Local and local-kms on loopback; %d warm tokens and %d cold starts per signer.\n",
		results[signerCases[0].name].warmCount, results[signerCases[0].name].coldCount)
	out.WriteString("Billed at 256 MB (0.145 vCPU) = warm p50 + CPU × (1/0.145 − 1).\n\n")
	out.WriteString("| signer | warm p50 | warm p99 | cold median | cold worst | CPU per token | billed at 256 MB | Lambda per million (requests + GB-s) |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, sc := range signerCases {
		l := results[sc.name]
		perMillion := 0.20 + 1e6*l.billed().Seconds()*lambdaMemoryGB*0.0000133334
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s | %s | $%.2f |\n", sc.name, msText(l.p50), msText(l.p99), msText(l.coldMedian), msText(l.coldMax),
			msText(l.cpuPerInvocation), msText(l.billed()), perMillion)
	}
	out.WriteString("\nA million tokens, per signer, with the duration billed above (prices and sources below; KMS for\n")
	out.WriteString("kms-envelope: one Decrypt per cold start at 1 % of invocations, at 0.1 % in brackets; one key pair a month\n")
	out.WriteString("is $0.00001 (ECC) or $0.0012 (RSA)):\n\n")
	out.WriteString("| signer | Lambda | DynamoDB (3 RRU) | KMS | total on REST ($3.50/M) | total on HTTP API ($1.00/M) | KMS ceiling per account and Region | largest item |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, sc := range signerCases {
		lambda, dynamo, kms, ceiling := costs(sc, results[sc.name].billed(), coldShare)
		kmsText := fmt.Sprintf("$%.2f", kms)
		if sc.signer == settings.SignerKMSEnvelope {
			_, _, low, _ := costs(sc, results[sc.name].billed(), coldShare/10)
			kmsText = fmt.Sprintf("$%.2f ($%.3f)", kms, low)
		}
		rest := lambda + dynamo + kms + restPerMillion
		largest, share := "API Gateway REST", restPerMillion/rest
		if kms > restPerMillion {
			largest, share = "KMS Sign", kms/rest
		}
		fmt.Fprintf(&out, "| %s | $%.2f | $%.2f | %s | **$%.2f** | **$%.2f** | %s | %s, %.0f %% |\n", sc.name, lambda, dynamo, kmsText,
			rest, lambda+dynamo+kms+httpPerMillion, ceiling, largest, 100*share)
	}
	out.WriteString(end)
	updated := string(b[:i]) + out.String() + string(b[j+len(end):])
	if err := os.WriteFile(path, []byte(updated), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCHMARKS.md's Lambda table rewritten")
}

func msText(d time.Duration) string { return strconv.FormatFloat(ms(d), 'f', 2, 64) + " ms" }

// cpuModel is the host CPU's model name, from /proc/cpuinfo.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(b); m != nil {
		return strings.TrimSpace(string(m[1]))
	}
	return runtime.GOARCH
}
