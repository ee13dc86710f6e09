package lambda

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// Every operation's worst case (each retry policy exhausted, worstCases) ends before the
// function's Timeout minus its deadline margin, so the answer is the service's own 503 and
// never a Lambda timeout; docs/dynamodb.md shows the same numbers.
func TestWorstCaseBelowTimeout(t *testing.T) {
	tp := loadTemplate(t)
	margin := settingDefault(t, "CAPIF_DEADLINE_MARGIN")
	notifyTimeout := longestAllowed(t, tp, "NotifyTimeout")
	ops := worstCases(notifyTimeout)
	if len(ops) < 6 {
		t.Fatalf("%d operations", len(ops))
	}
	for id, r := range tp.resources("AWS::Serverless::Function") {
		if _, ok := workerByID(id); ok {
			continue // TestWorkerWorstCaseBelowTimeout
		}
		p := tp.functionProps(r)
		timeout, ok := p["Timeout"].(int)
		if !ok {
			t.Fatalf("%s: no Timeout", id)
		}
		m := margin
		if env, _ := path(p, "Environment", "Variables").(map[string]any); env["CAPIF_DEADLINE_MARGIN"] != nil {
			var err error
			if m, err = time.ParseDuration(env["CAPIF_DEADLINE_MARGIN"].(string)); err != nil {
				t.Fatal(err)
			}
		}
		budget := time.Duration(timeout)*time.Second - m
		for _, op := range ops {
			if op.WorstCase() >= budget {
				t.Errorf("%s: %s may take %v, not below Timeout %ds − margin %v", id, op.Name, op.WorstCase(), timeout, m)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "dynamodb.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range worstCaseRows(append(ops, workerWorstCases(notifyTimeout)...)) {
		if !strings.Contains(string(b), row+"\n") {
			t.Errorf("docs/dynamodb.md lacks the row\n%s", row)
		}
	}
	for _, p := range []awsretry.Policy{awsretry.DynamoDB, awsretry.KMS, awsretry.S3} {
		if row := policyRow(p); !strings.Contains(string(b), row+"\n") {
			t.Errorf("docs/dynamodb.md lacks the policy row\n%s", row)
		}
	}
}

// probeOutbox is a store whose Due only records that a delivery run asked for work.
type probeOutbox struct {
	security.Store
	asked bool
}

func (p *probeOutbox) Due(context.Context, time.Time) ([]security.Owed, error) {
	p.asked = true
	return nil, nil
}

// claimingTail measures how close to its deadline a delivery run still starts work: the least
// time left at which security.Service.DeliverDue lists due records (to 10 ms).
func claimingTail(t *testing.T) time.Duration {
	t.Helper()
	starts := func(left time.Duration) bool {
		p := &probeOutbox{}
		ctx, cancel := context.WithTimeout(context.Background(), left)
		defer cancel()
		if _, err := security.New(p, nil, nil, nil, nil, security.Config{}).DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		return p.asked
	}
	lo, hi := time.Duration(0), 10*time.Minute
	if !starts(hi) {
		t.Fatalf("a run with %v left does nothing", hi)
	}
	for hi-lo > 10*time.Millisecond {
		if mid := (lo + hi) / 2; starts(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi.Round(10 * time.Millisecond)
}

// A delivery run stops claiming a tail before its deadline (the Lambda deadline minus the
// margin); what it may still wait for then (workerWorstCases: a scan, or the last attempt)
// is shorter than that tail, so the run ends in its report, never a Lambda timeout; and the
// worker's Timeout leaves room for a worst-case scan before the tail, so every run can claim.
func TestWorkerWorstCaseBelowTimeout(t *testing.T) {
	tp := loadTemplate(t)
	margin := settingDefault(t, "CAPIF_DEADLINE_MARGIN")
	tail := claimingTail(t)
	ops := workerWorstCases(longestAllowed(t, tp, "NotifyTimeout"))
	var scan time.Duration
	for _, op := range ops {
		if op.WorstCase() >= tail {
			t.Errorf("%s may take %v, not below the %v a run keeps back from its deadline", op.Name, op.WorstCase(), tail)
		}
		for _, s := range op.Steps {
			if strings.HasPrefix(s.What, "Due: Scan") {
				scan = s.Time
			}
		}
	}
	if scan == 0 {
		t.Fatal("workerWorstCases prices no Due scan")
	}
	for _, w := range workers {
		if w.cmd != settings.Worker {
			continue // no outbox claims: one key-set write per run
		}
		p := tp.functionProps(tp.resources("AWS::Serverless::Function")[w.logicalID])
		timeout, ok := p["Timeout"].(int)
		if !ok {
			t.Fatalf("%s: no Timeout", w.logicalID)
		}
		m := margin
		if env, _ := path(p, "Environment", "Variables").(map[string]any); env["CAPIF_DEADLINE_MARGIN"] != nil {
			var err error
			if m, err = time.ParseDuration(env["CAPIF_DEADLINE_MARGIN"].(string)); err != nil {
				t.Fatal(err)
			}
		}
		window := time.Duration(timeout)*time.Second - m - tail - scan
		if window <= 0 {
			t.Errorf("%s: Timeout %ds − margin %v − tail %v − scan %v leaves no time to claim", w.logicalID, timeout, m, tail, scan)
		}
		t.Logf("%s: Timeout %ds, margin %v, tail %v: claims for at least %v of a run", w.logicalID, timeout, m, tail, window)
	}
}

func worstCaseRows(ops []Operation) []string {
	var rows []string
	for _, op := range ops {
		var steps []string
		for _, s := range op.Steps {
			steps = append(steps, s.What+" "+s.Time.String())
		}
		rows = append(rows, "| "+op.Name+" | "+strings.Join(steps, " + ")+" | **"+op.WorstCase().String()+"** |")
	}
	return rows
}

func policyRow(p awsretry.Policy) string {
	return "| " + p.Name + " | " + itoa(p.Attempts) + " | " + p.AttemptTimeout.String() + " | " + p.MaxBackoff.String() + " | " + p.WorstCase().String() + " |"
}

func itoa(n int) string { return strconv.Itoa(n) }

// longestAllowed is the longest of the AllowedValues of the template's duration parameter name:
// the worst a deployment may choose.
func longestAllowed(t *testing.T, tp *template, name string) time.Duration {
	t.Helper()
	values, _ := path(tp.section("Parameters"), name, "AllowedValues").([]any)
	if len(values) == 0 {
		t.Fatalf("parameter %s has no AllowedValues", name)
	}
	var longest time.Duration
	for _, v := range values {
		d, err := time.ParseDuration(fmt.Sprint(v))
		if err != nil {
			t.Fatalf("parameter %s: %v", name, err)
		}
		longest = max(longest, d)
	}
	return longest
}

func settingDefault(t *testing.T, env string) time.Duration {
	t.Helper()
	for _, s := range settings.Table {
		if s.Env == env {
			d, err := time.ParseDuration(s.DefaultFor(settings.Function))
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("no setting %s", env)
	return 0
}

// The template's duration parameters accept what the settings accept of the values an operator
// would write, and their descriptions' examples: TokenTtl's pattern and CAPIF_TOKEN_TTL's parser
// agree; every NotifyTimeout value parses as CAPIF_NOTIFY_TIMEOUT.
func TestDurationParametersMatchTheSettings(t *testing.T) {
	tp := loadTemplate(t)
	params := tp.section("Parameters")
	pattern := regexp.MustCompile(fmt.Sprint(path(params, "TokenTtl", "AllowedPattern")))
	settingAccepts := func(env, v string) bool {
		_, _, err := settings.Load(settings.Function, nil, func(k string) string {
			return map[string]string{env: v, "CAPIF_API_ROOT": "https://capif.example.com", "CAPIF_TRUSTSTORE_FILE": "/x.pem",
				"CAPIF_TABLE_PREFIX": "p-", "CAPIF_SIGNER": "none"}[k]
		}, settings.Options{})
		return err == nil
	}
	for _, v := range []string{"600s", "10m", "1m30s", "1h", "90s", "2h45m", "1h0m0s", "0s", "0m", "-5s", "10", "1.5h", "abc"} {
		if got, want := pattern.MatchString(v), settingAccepts("CAPIF_TOKEN_TTL", v) && !strings.Contains(v, "."); got != want {
			t.Errorf("TokenTtl %q: the pattern accepts it %v, CAPIF_TOKEN_TTL (whole units) %v", v, got, want)
		}
	}
	for _, example := range regexp.MustCompile(`such as ([^.]+)\.`).FindStringSubmatch(fmt.Sprint(path(params, "TokenTtl", "Description")))[1:] {
		for _, v := range regexp.MustCompile(`[0-9a-z]+`).FindAllString(example, -1) {
			if v != "or" && !pattern.MatchString(v) {
				t.Errorf("TokenTtl's description names %q, which its pattern refuses", v)
			}
		}
	}
	for _, v := range path(params, "NotifyTimeout", "AllowedValues").([]any) {
		if !settingAccepts("CAPIF_NOTIFY_TIMEOUT", fmt.Sprint(v)) {
			t.Errorf("NotifyTimeout %v: CAPIF_NOTIFY_TIMEOUT refuses it", v)
		}
	}
}
