package lambda

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/internal/testenv"
)

// python3 with aws-sam-translator and cfn-lint (preinstalled on the project's machines) stand in
// for `sam validate --lint` and CloudFormation's SAM transform, which need an AWS account here.
func pythonWith(t *testing.T, module string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import "+module).Run()
	}
	if err != nil {
		testenv.Unavailable(t, "python3 with "+module, "pip install aws-sam-translator cfn-lint")
	}
	return py
}

// cfn-lint (with its SAM support) accepts the template: property names, types, enumerations,
// intrinsic functions and references.
func TestTemplateCfnLint(t *testing.T) {
	py := pythonWith(t, "cfnlint")
	out, err := exec.Command(py, "-c", "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())",
		filepath.Join(repoRoot(), "template.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint: %v\n%s", err, out)
	}
}

// The template after the SAM transform (what CloudFormation deploys): one stage, "live", mapped
// by the domain; each route an aws_proxy integration of the function the template names, with
// the permission for API Gateway to invoke it; the execute-api endpoint disabled; the gateway
// responses in the API definition; each role's only inline policy is the template's.
func TestTemplateAfterSAMTransform(t *testing.T) {
	py := pythonWith(t, "samtranslator")
	cmd := exec.Command(py, filepath.Join(repoRoot(), "tests", "lambda", "testdata", "sam_translate.py"), filepath.Join(repoRoot(), "template.yaml"))
	cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION=eu-west-1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("SAM transform: %v\n%s", err, stderr.String())
	}
	var cfn struct {
		Resources map[string]struct {
			Type       string         `json:"Type"`
			Properties map[string]any `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(out, &cfn); err != nil {
		t.Fatal(err)
	}
	byType := map[string][]string{}
	for id, r := range cfn.Resources {
		byType[r.Type] = append(byType[r.Type], id)
	}
	stages := byType["AWS::ApiGateway::Stage"]
	if len(stages) != 1 || cfn.Resources[stages[0]].Properties["StageName"] != "live" {
		t.Fatalf("stages %v: want exactly the live stage", stages)
	}
	if got := cfn.Resources["ApiMapping"].Properties["Stage"]; !reflect.DeepEqual(got, ref(stages[0])) {
		t.Errorf("the base path mapping targets %v, not the stage %s", got, stages[0])
	}
	if ms := cfn.Resources[stages[0]].Properties["MethodSettings"]; ms == nil {
		t.Error("the stage lost its throttling")
	}

	body, _ := cfn.Resources["Api"].Properties["Body"].(map[string]any)
	if path(body, "servers") == nil || !strings.Contains(mustJSON(t, body["servers"]), `"disableExecuteApiEndpoint":true`) {
		t.Errorf("the execute-api endpoint is not disabled: %v", body["servers"])
	}
	gr, _ := body["x-amazon-apigateway-gateway-responses"].(map[string]any)
	if path(gr, "MISSING_AUTHENTICATION_TOKEN", "statusCode") != "404" ||
		path(gr, "DEFAULT_4XX", "responseParameters", "gatewayresponse.header.Content-Type") != "'application/problem+json'" ||
		path(gr, "DEFAULT_5XX", "responseParameters", "gatewayresponse.header.Content-Type") != "'application/problem+json'" {
		t.Errorf("gateway responses %v", gr)
	}

	uriFn := regexp.MustCompile(`/functions/\$\{([A-Za-z0-9]+)\.Arn\}/invocations$`)
	var got []route
	paths, _ := body["paths"].(map[string]any)
	for p, item := range paths {
		for method, op := range item.(map[string]any) {
			integ, _ := path(op, "x-amazon-apigateway-integration").(map[string]any)
			if integ["type"] != "aws_proxy" || integ["httpMethod"] != "POST" {
				t.Errorf("%s %s: integration %v is not a Lambda proxy", method, p, integ)
			}
			m := uriFn.FindStringSubmatch(path(integ, "uri", "Fn::Sub").(string))
			if m == nil {
				t.Errorf("%s %s: integration uri %v", method, p, integ["uri"])
				continue
			}
			got = append(got, route{m[1], strings.ToUpper(method), p})
		}
	}
	slices.SortFunc(got, cmpRoute)
	want := slices.SortedFunc(slices.Values(routes), cmpRoute)
	if !slices.Equal(got, want) {
		t.Errorf("routes after the transform:\n got %v\nwant %v", got, want)
	}
	perms := 0
	for _, id := range byType["AWS::Lambda::Permission"] {
		p := cfn.Resources[id].Properties
		if p["Principal"] == "apigateway.amazonaws.com" && p["Action"] == "lambda:InvokeFunction" {
			perms++
		}
	}
	if perms != len(routes) {
		t.Errorf("%d invoke permissions for API Gateway, want one per route (%d)", perms, len(routes))
	}

	// The worker's schedule: an EventBridge rule every minute targeting the function, allowed to
	// invoke it; no route.
	for _, w := range workers {
		rules := 0
		for _, id := range byType["AWS::Events::Rule"] {
			p := cfn.Resources[id].Properties
			targets, _ := p["Targets"].([]any)
			if len(targets) != 1 || !reflect.DeepEqual(path(targets[0], "Arn"), getAtt(w.logicalID, "Arn")) {
				continue
			}
			rules++
			if p["ScheduleExpression"] != w.schedule || p["State"] == "DISABLED" || path(targets[0], "Input") != nil {
				t.Errorf("%s: rule %s %v", w.logicalID, id, p)
			}
		}
		perms := 0
		for _, id := range byType["AWS::Lambda::Permission"] {
			p := cfn.Resources[id].Properties
			if reflect.DeepEqual(p["FunctionName"], ref(w.logicalID)) {
				if p["Principal"] != "events.amazonaws.com" || p["Action"] != "lambda:InvokeFunction" {
					t.Errorf("%s: permission %s %v: only EventBridge may invoke the worker", w.logicalID, id, p)
				}
				perms++
			}
		}
		if rules != 1 || perms != 1 {
			t.Errorf("%s: %d schedule rules and %d invoke permissions, want 1 and 1", w.logicalID, rules, perms)
		}
	}

	tp := loadTemplate(t)
	for _, f := range allFunctions() {
		fn := cfn.Resources[f.logicalID].Properties
		if fn["Runtime"] != "provided.al2023" || fn["Handler"] != "bootstrap" || !reflect.DeepEqual(fn["Architectures"], []any{"arm64"}) {
			t.Errorf("%s: %v %v %v", f.logicalID, fn["Runtime"], fn["Handler"], fn["Architectures"])
		}
		// The role SAM makes carries the function's Policies; an explicit Role (the token and
		// rotation functions: WrappingKey's policy names them) has its AWS::IAM::Policy.
		roleID := f.logicalID + "Role"
		var docs []any
		if explicit := refsIn(fn["Role"]); len(explicit) == 1 && explicit[0] != roleID {
			roleID = explicit[0]
			for _, id := range byType["AWS::IAM::Policy"] {
				if slices.ContainsFunc(cfn.Resources[id].Properties["Roles"].([]any), func(r any) bool { return reflect.DeepEqual(r, ref(roleID)) }) {
					docs = append(docs, cfn.Resources[id].Properties["PolicyDocument"])
				}
			}
		} else {
			pols, _ := cfn.Resources[roleID].Properties["Policies"].([]any)
			for _, p := range pols {
				docs = append(docs, path(p, "PolicyDocument"))
			}
		}
		role := cfn.Resources[roleID].Properties
		if len(docs) != 1 {
			t.Errorf("%s: %d policies on its role %s, want 1", f.logicalID, len(docs), roleID)
			continue
		}
		if doc, src := mustJSON(t, docs[0]), mustJSON(t, functionPolicies(t, tp, f.logicalID)[0]); doc != src {
			t.Errorf("%s: the deployed policy differs from the template's:\n%s\n%s", f.logicalID, doc, src)
		}
		if mp := mustJSON(t, role["ManagedPolicyArns"]); !strings.Contains(mp, "AWSLambdaBasicExecutionRole") ||
			!strings.Contains(mp, "AWSXrayWriteOnlyAccess") || strings.Count(mp, "arn:") != 2 {
			t.Errorf("%s: managed policies %s, want only AWSLambdaBasicExecutionRole (logs) and AWSXrayWriteOnlyAccess (traces)", f.logicalID, mp)
		}
		if path(fn, "TracingConfig", "Mode") != "Active" {
			t.Errorf("%s: TracingConfig %v, want X-Ray active tracing", f.logicalID, fn["TracingConfig"])
		}
	}
}

func cmpRoute(a, b route) int {
	return strings.Compare(a.method+" "+a.resource, b.method+" "+b.resource)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
