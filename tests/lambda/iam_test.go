package lambda

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/store/dynamodb/dynamodbtest"
)

// permission is one IAM action on one resource of the template (its logical id; "Truststore"
// for the truststore object named by the TruststoreUri parameter).
type permission struct{ action, resource string }

// callRecorder is an AWS middleware that maps every SDK call a function makes to the IAM
// permissions it needs (DynamoDB Local and local-kms check none, so the test has to).
type callRecorder struct {
	ds    dataset
	mu    sync.Mutex
	perms map[permission]int
}

func (r *callRecorder) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("iamRecorder",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			r.record(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), in.Parameters)
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func (r *callRecorder) record(service, op string, params any) {
	var got []permission
	switch service {
	case "DynamoDB":
		logical := map[string]string{r.ds.tables.Contexts: "ContextsTable", r.ds.tables.Registry: "RegistryTable", r.ds.tables.Outbox: "OutboxTable"}
		for _, p := range dynamodbtest.Permissions(op, params) {
			res, ok := logical[p.Table]
			if !ok {
				res = "table " + p.Table
			}
			got = append(got, permission{p.Action, res})
		}
	case "KMS":
		var key string
		switch in := params.(type) {
		case *awskms.SignInput:
			key = aws.ToString(in.KeyId)
		case *awskms.GetPublicKeyInput:
			key = aws.ToString(in.KeyId)
		case *awskms.DescribeKeyInput:
			key = aws.ToString(in.KeyId)
		}
		res := "key " + key
		if key == r.ds.keyID || strings.HasSuffix(key, ":key/"+r.ds.keyID) {
			res = "SigningKey"
		}
		got = append(got, permission{"kms:" + op, res})
	case "S3":
		res, action := "object", "s3:"+op
		if in, ok := params.(*lambdaapp.GetObjectInput); ok {
			if in.Bucket+"/"+in.Key == "trust-bucket/mtls/truststore.pem" {
				res = "Truststore"
			}
			if in.VersionID != "" { // GetObject of a version is authorized as s3:GetObjectVersion
				action = "s3:GetObjectVersion"
			}
		}
		got = append(got, permission{action, res})
	default:
		got = append(got, permission{service + ":" + op, "?"})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range got {
		r.perms[p]++
	}
}

func (r *callRecorder) set() map[permission]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[permission]bool{}
	for p := range r.perms {
		out[p] = true
	}
	return out
}

// templatePolicy is what a function's role grants, from its Policies in template.yaml. Every
// statement must be an Allow of named actions on resources the test recognises.
func templatePolicy(t *testing.T, tp *template, logicalID string) map[permission]bool {
	t.Helper()
	fn := tp.resources("AWS::Serverless::Function")[logicalID]
	truststore := map[string]any{"Fn::Sub": []any{"arn:${AWS::Partition}:s3:::${Object}",
		map[string]any{"Object": map[string]any{"Fn::Select": []any{1, map[string]any{"Fn::Split": []any{"s3://", ref("TruststoreUri")}}}}}}}
	out := map[permission]bool{}
	policies, _ := props(fn)["Policies"].([]any)
	if len(policies) == 0 {
		t.Fatalf("%s has no Policies", logicalID)
	}
	for _, pol := range policies {
		stmts, ok := path(pol, "Statement").([]any)
		if !ok {
			t.Fatalf("%s: a policy that is not an inline document (a SAM policy template?): %v", logicalID, pol)
		}
		for _, st := range stmts {
			if path(st, "Effect") != "Allow" {
				t.Errorf("%s: statement %v is not an Allow", logicalID, st)
			}
			resources, ok := path(st, "Resource").([]any)
			if !ok {
				resources = []any{path(st, "Resource")}
			}
			for _, action := range strs(path(st, "Action")) {
				if strings.Contains(action, "*") {
					t.Errorf("%s: wildcard action %s", logicalID, action)
				}
				for _, r := range resources {
					var name string
					switch {
					case reflect.DeepEqual(r, truststore):
						name = "Truststore"
					case len(refsIn(r)) == 1 && reflect.DeepEqual(r, getAtt(refsIn(r)[0], "Arn")):
						name = refsIn(r)[0]
					default:
						t.Errorf("%s: resource %v is not a template resource's ARN or the truststore object", logicalID, r)
						continue
					}
					out[permission{action, name}] = true
				}
			}
		}
	}
	return out
}

// Each function's role grants exactly the IAM permissions of the AWS calls it makes: the
// functions run in process (lambdaapp, the same code as the bootstraps) with the template's
// environment, against DynamoDB Local and local-kms, with the truststore in a stand-in S3; every
// events/ file and the whole flow go through them (a notification is delivered, so the outbox
// clean-up happens too). The worker then runs from its scheduled event over a due record seeded
// in the outbox (Scan, the Claim's UpdateItem, the Delivered DeleteItem), with a record of the
// events whose destination cannot be reached retried (another UpdateItem) if it is due.
func TestIAMPolicyIsExactlyWhatEachFunctionCalls(t *testing.T) {
	ds := newDataset(t)
	tp := loadTemplate(t)

	devCA, err := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	fakeS3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/trust-bucket/mtls/truststore.pem" {
			_, _ = w.Write(devCA)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer fakeS3.Close()
	t.Setenv("AWS_ENDPOINT_URL_S3", fakeS3.URL)
	var delivered atomic.Int64
	notif := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer notif.Close()

	recorders := map[string]*callRecorder{}
	fns := map[string]*lambdaapp.Function{}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	for _, f := range functions {
		env := functionEnv(t, f.logicalID, ds)
		// The adapter reads the table names from the process environment (as in a Lambda
		// process); the four in-process functions share the data set, so one setting serves all.
		for _, k := range []string{"CAPIF_CONTEXTS_TABLE", "CAPIF_REGISTRY_TABLE", "CAPIF_OUTBOX_TABLE"} {
			t.Setenv(k, env[k])
		}
		env["CAPIF_TRUSTSTORE_FILE"] = ""
		env["CAPIF_TRUSTSTORE_URI"] = "s3://trust-bucket/mtls/truststore.pem"
		env["CAPIF_TRUSTSTORE_VERSION"] = sampleRefs["TruststoreVersion"]
		env["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "true" // the stand-in invoker listens on 127.0.0.1
		cfg, err := lambdaapp.ConfigFromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		rec := &callRecorder{ds: ds, perms: map[permission]int{}}
		fn, err := lambdaapp.New(context.Background(), cfg, f.build, lambdaapp.Options{Logger: logger, AWSAPIOptions: []func(*middleware.Stack) error{rec.middleware}, Backends: f.backends()})
		if err != nil {
			t.Fatal(err)
		}
		defer fn.Close()
		recorders[f.logicalID], fns[f.logicalID] = rec, fn
	}
	invoke := func(t *testing.T, name string, payload []byte) events.APIGatewayProxyResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := fns[name].Handle(ctx, payload)
		if err != nil {
			t.Fatalf("%s returned an error: %v", name, err)
		}
		return resp
	}
	t.Run("events", func(t *testing.T) { runEventCases(t, invoke) })
	t.Run("flow", func(t *testing.T) { runFlow(t, invoke, notif.URL+"/notifications") })
	if delivered.Load() == 0 {
		t.Error("no notification was delivered: the outbox clean-up was not exercised")
	}
	for _, w := range workers {
		t.Run(w.logicalID, func(t *testing.T) {
			env := functionEnv(t, w.logicalID, ds)
			env["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "true"
			cfg, _, err := settings.Load(settings.Worker, nil, func(k string) string { return env[k] }, settings.Options{Name: "worker"})
			if err != nil {
				t.Fatal(err)
			}
			rec := &callRecorder{ds: ds, perms: map[permission]int{}}
			wk, err := lambdaapp.NewWorker(context.Background(), cfg, lambdaapp.Options{Logger: logger, AWSAPIOptions: []func(*middleware.Stack) error{rec.middleware}})
			if err != nil {
				t.Fatal(err)
			}
			defer wk.Close()
			recorders[w.logicalID] = rec
			seeded := seedOwed(t, ds, notif.URL+"/worker")
			payload, err := os.ReadFile(filepath.Join(eventsDir(), w.event))
			if err != nil {
				t.Fatal(err)
			}
			before := delivered.Load()
			// The template's Timeout: a run with less than its tail left claims nothing.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := wk.Handle(ctx, payload)
			if err != nil || rep.Delivered < 1 || delivered.Load() == before {
				t.Fatalf("run: %+v, %v", rep, err)
			}
			for _, o := range pendingOwed(t, ds) {
				if o.ID == seeded {
					t.Errorf("the delivered record %s is still in the outbox", seeded)
				}
			}
		})
	}
	if t.Failed() {
		t.Logf("function logs:\n%s", logs.String())
		return
	}
	for _, f := range allFunctions() {
		got, want := recorders[f.logicalID].set(), templatePolicy(t, tp, f.logicalID)
		for _, p := range slices.SortedFunc(maps.Keys(got), cmpPerm) {
			if !want[p] {
				t.Errorf("%s calls %s on %s, which its policy does not grant", f.logicalID, p.action, p.resource)
			}
		}
		for _, p := range slices.SortedFunc(maps.Keys(want), cmpPerm) {
			if !got[p] {
				t.Errorf("%s is granted %s on %s, which it never calls (least privilege)", f.logicalID, p.action, p.resource)
			}
		}
		t.Logf("%s: %v", f.logicalID, slices.SortedFunc(maps.Keys(got), cmpPerm))
	}
}

func cmpPerm(a, b permission) int {
	return strings.Compare(a.resource+" "+a.action, b.resource+" "+b.action)
}
