package lambda

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	notifyTimeout := parameterDuration(t, tp, "NotifyTimeout")
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
	ops := workerWorstCases(parameterDuration(t, tp, "NotifyTimeout"))
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

// parameterDuration is the default of the template's duration parameter name (what a stack
// deployed without it runs with).
func parameterDuration(t *testing.T, tp *template, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(fmt.Sprint(path(tp.section("Parameters"), name, "Default")))
	if err != nil {
		t.Fatalf("parameter %s: %v", name, err)
	}
	return d
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
