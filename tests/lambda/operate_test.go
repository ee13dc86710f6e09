package lambda

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// metricRef is one metric an alarm or the dashboard names.
type metricRef struct {
	namespace any // {"Ref": "MetricsNamespace"} for the service's own, else a string
	name      string
	dims      map[string]any
}

func alarmMetrics(t *testing.T, id string, p map[string]any) []metricRef {
	t.Helper()
	dims := func(v any) map[string]any {
		out := map[string]any{}
		l, _ := v.([]any)
		for _, d := range l {
			out[fmt.Sprint(path(d, "Name"))] = path(d, "Value")
		}
		return out
	}
	if name, ok := p["MetricName"].(string); ok {
		return []metricRef{{p["Namespace"], name, dims(p["Dimensions"])}}
	}
	queries, _ := p["Metrics"].([]any)
	var out []metricRef
	for _, q := range queries {
		q, present := ifValue(t, q) // a query under a condition: as deployed with sampleConditions
		if !present {
			continue
		}
		if m := path(q, "MetricStat", "Metric"); m != nil {
			out = append(out, metricRef{path(m, "Namespace"), fmt.Sprint(path(m, "MetricName")), dims(path(m, "Dimensions"))})
		}
	}
	if len(out) == 0 {
		t.Errorf("%s names no metric", id)
	}
	return out
}

// checkMetric: a metric of the service is one shared/metrics emits (the access log test shows
// each is really written), with bounded dimensions; a Lambda metric is one of a template
// function's.
func checkMetric(t *testing.T, where string, m metricRef, functionIDs []string) {
	t.Helper()
	switch {
	case reflect.DeepEqual(m.namespace, ref("MetricsNamespace")):
		if !slices.Contains(metrics.Names, m.name) {
			t.Errorf("%s: metric %q is not one the code emits (shared/metrics.Names)", where, m.name)
		}
		for d, v := range m.dims {
			ok := d == metrics.DimOperation && slices.Contains(operations(), fmt.Sprint(v)) ||
				d == metrics.DimOAuthError && m.name == metrics.TokenDenials && slices.Contains(oauthErrors, fmt.Sprint(v))
			if !ok {
				t.Errorf("%s: %s by %s=%v is never emitted", where, m.name, d, v)
			}
		}
	case m.namespace == "AWS/Lambda":
		if m.name != "Errors" && m.name != "Throttles" {
			t.Errorf("%s: Lambda metric %q", where, m.name)
		}
		fn, _ := m.dims["FunctionName"].(map[string]any)
		if len(m.dims) != 1 || fn == nil || !slices.Contains(functionIDs, fmt.Sprint(fn["Ref"])) {
			t.Errorf("%s: %s dimensions %v name no function of the template", where, m.name, m.dims)
		}
	default:
		t.Errorf("%s: namespace %v", where, m.namespace)
	}
}

func operations() []string {
	return []string{security.ObtainSecurityMethod.String(), security.ObtainAuthorization.String(), security.ObtainAPIInvokerInfo.String(),
		security.RevokeAuthorization.String(), httpapi.NameJWKS, httpapi.NameMetadata}
}

var oauthErrors = []string{capif.InvalidRequest, capif.InvalidClient, capif.InvalidGrant, capif.UnauthorizedClient, capif.UnsupportedGrantType, capif.InvalidScope}

// Every alarm names metrics the code emits (or the functions' own Lambda metrics), notifies the
// optional SNS topic, and the alarms an on-call engineer needs are all there.
func TestTemplateAlarms(t *testing.T) {
	tp := loadTemplate(t)
	var functionIDs []string
	for id := range tp.resources("AWS::Serverless::Function") {
		functionIDs = append(functionIDs, id)
	}
	if d := path(tp.section("Parameters"), "MetricsNamespace", "Default"); d != settings.DefaultMetricsNamespace {
		t.Errorf("MetricsNamespace defaults to %v, the code to %s", d, settings.DefaultMetricsNamespace)
	}
	if d := path(tp.section("Parameters"), "AlarmTopicArn", "Default"); d != "" {
		t.Errorf("AlarmTopicArn must be optional (Default \"\"), is %v", d)
	}
	topic := map[string]any{"Fn::If": []any{"HasAlarmTopic", []any{ref("AlarmTopicArn")}, ref("AWS::NoValue")}}
	covered := map[string]bool{}
	alarms := tp.resources("AWS::CloudWatch::Alarm")
	for id, r := range alarms {
		p := props(r)
		for _, m := range alarmMetrics(t, id, p) {
			checkMetric(t, id, m, functionIDs)
			covered[m.name] = true
			if m.namespace == "AWS/Lambda" {
				fn, _ := m.dims["FunctionName"].(map[string]any)
				covered[m.name+" "+fmt.Sprint(fn["Ref"])] = true
			}
		}
		if !reflect.DeepEqual(p["AlarmActions"], topic) || !reflect.DeepEqual(p["OKActions"], topic) {
			t.Errorf("%s: AlarmActions %v OKActions %v, want the optional AlarmTopicArn", id, p["AlarmActions"], p["OKActions"])
		}
		if p["TreatMissingData"] != "notBreaching" {
			t.Errorf("%s: TreatMissingData %v (no traffic is no alarm)", id, p["TreatMissingData"])
		}
		if !strings.Contains(fmt.Sprint(p["AlarmDescription"]), "Operating it") {
			t.Errorf("%s: the description does not point at docs/deploy.md's \"Operating it\"", id)
		}
	}
	for _, want := range []string{metrics.ServerErrors, metrics.KMSThrottles, metrics.DynamoDBThrottles, metrics.NotificationsDeadLettered} {
		if !covered[want] {
			t.Errorf("no alarm on %s", want)
		}
	}
	for _, f := range allFunctions() {
		for _, m := range []string{"Errors", "Throttles"} {
			if !covered[m+" "+f.logicalID] {
				t.Errorf("no alarm on %s of %s", m, f.logicalID)
			}
		}
	}
	// A failed delivery run is worth an alarm of its own, at once: owed notifications wait.
	if p := props(alarms["DeliveryWorkerErrorsAlarm"]); p == nil || p["MetricName"] != "Errors" ||
		!reflect.DeepEqual(path(p, "Dimensions"), []any{map[string]any{"Name": "FunctionName", "Value": ref("DeliverNotificationsFunction")}}) ||
		p["Threshold"] != 0 || p["EvaluationPeriods"] != 1 || p["ComparisonOperator"] != "GreaterThanThreshold" {
		t.Errorf("DeliveryWorkerErrorsAlarm %v: want Errors of DeliverNotificationsFunction > 0 in one period", p)
	}

	// The dashboard: every metric it graphs is emitted, every alarm it shows exists.
	body := path(props(tp.resources("AWS::CloudWatch::Dashboard")["Dashboard"]), "DashboardBody", "Fn::Sub")
	sub, _ := body.([]any)
	if len(sub) != 2 || !reflect.DeepEqual(path(sub[1], "Namespace"), ref("MetricsNamespace")) {
		t.Fatalf("DashboardBody %v: want !Sub [body, {Namespace: !Ref MetricsNamespace, ...}]", body)
	}
	text := sub[0].(string)
	// The other variables are fragments under a condition (as deployed with sampleConditions).
	for name, v := range sub[1].(map[string]any) {
		if name == "Namespace" {
			continue
		}
		v, _ := ifValue(t, v)
		frag, ok := v.(string)
		if m, isSub := v.(map[string]any); isSub {
			frag, ok = m["Fn::Sub"].(string)
		}
		if !ok {
			t.Fatalf("DashboardBody variable %s: %v", name, v)
		}
		text = strings.ReplaceAll(text, "${"+name+"}", frag)
	}
	var alarmRefs []string
	text = regexp.MustCompile(`\$\{([A-Za-z0-9:]+)(\.Arn)?\}`).ReplaceAllStringFunc(text, func(m string) string {
		name := strings.TrimSuffix(strings.Trim(m, "${}"), ".Arn")
		switch {
		case name == "Namespace":
			return "@ns"
		case strings.HasPrefix(name, "AWS::"):
			return "x"
		case strings.HasSuffix(m, ".Arn}"):
			alarmRefs = append(alarmRefs, name)
		}
		return "@" + name
	})
	var dash struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Metrics [][]any
				Alarms  []string
			}
		}
	}
	if err := json.Unmarshal([]byte(text), &dash); err != nil {
		t.Fatalf("DashboardBody is not JSON: %v\n%s", err, text)
	}
	graphed := map[string]bool{}
	for _, w := range dash.Widgets {
		var prev []string // "..." repeats the previous row's leading namespace, name, dimension names
		for _, row := range w.Properties.Metrics {
			var cells []string
			for _, c := range row {
				if s, ok := c.(string); ok {
					cells = append(cells, s)
				}
			}
			if len(cells) > 0 && cells[0] == "..." {
				cells = append(slices.Clone(prev[:len(prev)-(len(cells)-1)]), cells[1:]...)
			}
			prev = cells
			if len(cells) < 2 || len(cells)%2 != 0 {
				t.Errorf("dashboard row %v", row)
				continue
			}
			m := metricRef{namespace: cells[0], name: cells[1], dims: map[string]any{}}
			if cells[0] == "@ns" {
				m.namespace = ref("MetricsNamespace")
			}
			for i := 2; i < len(cells); i += 2 {
				if v, ok := strings.CutPrefix(cells[i+1], "@"); ok {
					m.dims[cells[i]] = ref(v)
				} else {
					m.dims[cells[i]] = cells[i+1]
				}
			}
			checkMetric(t, "dashboard", m, functionIDs)
			graphed[m.name] = true
		}
	}
	for _, name := range metrics.Names {
		if !graphed[name] {
			t.Errorf("the dashboard does not graph %s", name)
		}
	}
	for _, a := range alarmRefs {
		if _, ok := alarms[a]; !ok {
			t.Errorf("the dashboard shows %s, which is no alarm of the template", a)
		}
	}
	if len(alarmRefs) != len(alarms) {
		t.Errorf("the dashboard shows %d alarms of %d", len(alarmRefs), len(alarms))
	}
}

// samconfigOverrides are samconfig.toml's parameter_overrides.
func samconfigOverrides(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^parameter_overrides = "(.*)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("samconfig.toml has no parameter_overrides line")
	}
	line := strings.ReplaceAll(string(m[1]), `\"`, `"`)
	out := map[string]string{}
	for _, kv := range regexp.MustCompile(`(\w+)="([^"]*)"`).FindAllStringSubmatch(line, -1) {
		out[kv[1]] = kv[2]
	}
	if len(out) == 0 {
		t.Fatalf("parameter_overrides %q", line)
	}
	return out
}

// allowed applies a parameter's AllowedPattern (Java's regex dialect; ours stay within Go's)
// and AllowedValues to v.
func allowed(t *testing.T, name string, p map[string]any, v string) bool {
	t.Helper()
	if pat, ok := p["AllowedPattern"].(string); ok {
		re, err := regexp.Compile(`^(?:` + pat + `)$`) // CloudFormation matches the whole value
		if err != nil {
			t.Fatalf("%s: AllowedPattern %q: %v", name, pat, err)
		}
		if !re.MatchString(v) {
			return false
		}
	}
	if vals, ok := p["AllowedValues"].([]any); ok {
		return slices.ContainsFunc(vals, func(a any) bool { return fmt.Sprint(a) == v })
	}
	return true
}

// A non-guided deploy with samconfig.toml as shipped stops at parameter validation, before
// anything is created, and says what to fill in; real values pass.
func TestSamconfigPlaceholdersFailValidation(t *testing.T) {
	tp := loadTemplate(t)
	params := tp.section("Parameters")
	overrides := samconfigOverrides(t)
	real := map[string]string{
		"DomainName":        "capif.operator.net",
		"CertificateArn":    "arn:aws:acm:eu-west-1:210987654321:certificate/0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011",
		"TruststoreUri":     "s3://operator-truststore/capif/truststore.pem",
		"TruststoreVersion": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY.Vl_a-b/c=",
	}
	placeholders := 0
	for name, v := range overrides {
		p, ok := params[name].(map[string]any)
		if !ok {
			t.Errorf("samconfig.toml sets %s, which the template does not declare", name)
			continue
		}
		if !strings.Contains(v, "REPLACE-ME") {
			if !allowed(t, name, p, v) {
				t.Errorf("samconfig.toml's %s=%q fails the template's validation", name, v)
			}
			continue
		}
		placeholders++
		if allowed(t, name, p, v) {
			t.Errorf("samconfig.toml's placeholder %s=%q passes the template's validation: a deploy would fail late", name, v)
		}
		cd, _ := p["ConstraintDescription"].(string)
		if !strings.Contains(cd, "REPLACE-ME") || len(cd) < 40 {
			t.Errorf("%s: ConstraintDescription %q does not say what to fill in", name, cd)
		}
		if good, ok := real[name]; !ok || !allowed(t, name, p, good) {
			t.Errorf("%s: a real value (%q) fails the template's validation", name, good)
		}
	}
	// Every required parameter is in samconfig.toml, as a placeholder to replace.
	for name, p := range params {
		if _, hasDefault := p.(map[string]any)["Default"]; !hasDefault {
			if v, ok := overrides[name]; !ok || !strings.Contains(v, "REPLACE-ME") {
				t.Errorf("required parameter %s: samconfig.toml has %q, want a REPLACE-ME placeholder", name, v)
			}
		}
	}
	if placeholders != len(real) {
		t.Errorf("%d placeholders in samconfig.toml, want %d (%v)", placeholders, len(real), overrides)
	}
	// The first deploy creates unprotected tables (a rollback deletes them); docs/deploy.md says
	// how protection is switched on next.
	if d := path(params, "DeletionProtection", "Default"); d != "false" || overrides["DeletionProtection"] != "false" {
		t.Errorf("DeletionProtection: default %v, samconfig.toml %q; want \"false\" for the first create", d, overrides["DeletionProtection"])
	}
	doc, _ := os.ReadFile(filepath.Join(repoRoot(), "docs", "deploy.md"))
	if !strings.Contains(string(doc), "DeletionProtection=true") {
		t.Error("docs/deploy.md does not say how to switch deletion protection on")
	}
}

// Tracing: every function is actively traced, and so is the stage.
func TestTemplateTracing(t *testing.T) {
	tp := loadTemplate(t)
	for id, r := range tp.resources("AWS::Serverless::Function") {
		if v := tp.functionProps(r)["Tracing"]; v != "Active" {
			t.Errorf("%s: Tracing %v, want Active", id, v)
		}
	}
	if v := props(tp.resources("AWS::Serverless::Api")["Api"])["TracingEnabled"]; v != true {
		t.Errorf("Api TracingEnabled %v", v)
	}
	// The server certificate's ownership proof is optional.
	dom := props(tp.resources("AWS::ApiGateway::DomainName")["ApiDomain"])
	want := map[string]any{"Fn::If": []any{"HasOwnershipVerification", ref("OwnershipVerificationCertificateArn"), ref("AWS::NoValue")}}
	if !reflect.DeepEqual(dom["OwnershipVerificationCertificateArn"], want) {
		t.Errorf("OwnershipVerificationCertificateArn %v", dom["OwnershipVerificationCertificateArn"])
	}
}
