package lambda

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// Every operation's worst case (each retry policy exhausted, app.WorstCases) ends before the
// function's Timeout minus its deadline margin, so the answer is the service's own 503 and
// never a Lambda timeout; docs/dynamodb.md shows the same numbers.
func TestWorstCaseBelowTimeout(t *testing.T) {
	tp := loadTemplate(t)
	margin := settingDefault(t, "CAPIF_DEADLINE_MARGIN")
	ops := app.WorstCases(security.Config{}) // what app.Open passes: MaxAttempts unset, the default
	if len(ops) < 6 {
		t.Fatalf("%d operations", len(ops))
	}
	for id, r := range tp.resources("AWS::Serverless::Function") {
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
	for _, row := range worstCaseRows(ops) {
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

func worstCaseRows(ops []app.Operation) []string {
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
