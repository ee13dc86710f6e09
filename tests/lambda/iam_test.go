package lambda

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"maps"
	"math/big"
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
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/internal/aeftest"
	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/envelope"
	"github.com/capifcore/capif-security/shared/signer/kms"
	"github.com/capifcore/capif-security/shared/store/dynamodb/dynamodbtest"
)

// permission is one IAM action on one resource of the template (its logical id; "Truststore"
// for the truststore object named by the TruststoreUri parameter).
type permission struct{ action, resource string }

// callRecorder is an AWS middleware that maps every SDK call a function makes to the IAM
// permissions it needs (DynamoDB Local and local-kms check none, so the test has to).
type callRecorder struct {
	ds  dataset
	ccf string // the CCF's client certificate key (CcfClientKey)
	// leadingKey, when set, is the one partition key the function's DynamoDB calls may name
	// (its policy's dynamodb:LeadingKeys).
	leadingKey string
	mu         sync.Mutex
	perms      map[permission]int
}

// taggedKeys is the resource of the grants conditioned on aws:ResourceTag/capif:stack: the
// stack's token keys (the template's tagged keys, SigningKey and SigningKeyRsa).
const taggedKeys = "keys tagged capif:stack"

// leadingKeys are the partition keys a DynamoDB request names.
func leadingKeys(params any) []string {
	var out []string
	pk := func(k map[string]ddbtypes.AttributeValue) {
		if v, ok := k["pk"].(*ddbtypes.AttributeValueMemberS); ok {
			out = append(out, v.Value)
		} else {
			out = append(out, "(not a pk)")
		}
	}
	switch in := params.(type) {
	case *awsddb.BatchGetItemInput:
		for _, ka := range in.RequestItems {
			for _, k := range ka.Keys {
				pk(k)
			}
		}
	case *awsddb.UpdateItemInput:
		pk(in.Key)
	default:
		out = append(out, "(unchecked request)")
	}
	return out
}

// contextBound reports whether a KMS request's encryption context is the one the policies
// require: this stack's capif:stack and a capif:kid, nothing else.
func contextBound(ec map[string]string) bool {
	return len(ec) == 2 && ec["capif:stack"] == sampleRefs["AWS::StackName"] && ec["capif:kid"] != ""
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
			if r.leadingKey != "" && slices.ContainsFunc(leadingKeys(params), func(k string) bool { return k != r.leadingKey }) {
				res += " outside " + r.leadingKey
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
		case *awskms.DecryptInput:
			key = aws.ToString(in.KeyId)
		case *awskms.GenerateDataKeyPairWithoutPlaintextInput:
			key = aws.ToString(in.KeyId)
		}
		res := "key " + key
		switch {
		case key == r.ds.keyID || strings.HasSuffix(key, ":key/"+r.ds.keyID):
			res = taggedKeys
			if in, ok := params.(*awskms.SignInput); ok && (in.SigningAlgorithm != kmstypes.SigningAlgorithmSpecEcdsaSha256 || in.MessageType != kmstypes.MessageTypeDigest) {
				res = "SigningKey with " + string(in.SigningAlgorithm) + " " + string(in.MessageType)
			}
		case key == r.ds.rsaID || strings.HasSuffix(key, ":key/"+r.ds.rsaID):
			res = taggedKeys
			if in, ok := params.(*awskms.SignInput); ok && (in.SigningAlgorithm != kmstypes.SigningAlgorithmSpecRsassaPkcs1V15Sha256 || in.MessageType != kmstypes.MessageTypeDigest) {
				res = "SigningKeyRsa with " + string(in.SigningAlgorithm) + " " + string(in.MessageType)
			}
		case key != "" && key == r.ds.wrapID:
			res = "WrappingKey"
			// The policies' conditions on this key: the stack's encryption context; key pairs of
			// the token algorithms only.
			switch in := params.(type) {
			case *awskms.DecryptInput:
				if !contextBound(in.EncryptionContext) {
					res = "WrappingKey outside the policy's condition"
				}
			case *awskms.GenerateDataKeyPairWithoutPlaintextInput:
				if !contextBound(in.EncryptionContext) || in.KeyPairSpec != kmstypes.DataKeyPairSpecEccNistP256 && in.KeyPairSpec != kmstypes.DataKeyPairSpecRsa2048 {
					res = "WrappingKey outside the policy's condition"
				}
			}
		case key != "" && key == r.ccf:
			res = "CcfClientKey"
			// The template's condition on this key: a digest, ECDSA_SHA_256.
			if in, ok := params.(*awskms.SignInput); !ok || in.MessageType != kmstypes.MessageTypeDigest || in.SigningAlgorithm != kmstypes.SigningAlgorithmSpecEcdsaSha256 {
				res = "CcfClientKey outside the policy's condition"
			}
		}
		got = append(got, permission{"kms:" + op, res})
	case "S3":
		res, action := "object", "s3:"+op
		if in, ok := params.(*lambdaapp.GetObjectInput); ok {
			switch "s3://" + in.Bucket + "/" + in.Key {
			case sampleRefs["TruststoreUri"]:
				res = "Truststore"
			case sampleRefs["CcfCertificateUri"]:
				res = "CcfCertificate"
			case sampleRefs["AefCaUri"]:
				res = "AefCa"
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

// templatePolicy is what a function's role grants, from its policies in template.yaml
// (functionPolicies). Every statement must be an Allow of named actions on resources the test
// recognises.
func templatePolicy(t *testing.T, tp *template, logicalID string) map[permission]bool {
	t.Helper()
	object := func(param string) map[string]any {
		return map[string]any{"Fn::Sub": []any{"arn:${AWS::Partition}:s3:::${Object}",
			map[string]any{"Object": map[string]any{"Fn::Select": []any{1, map[string]any{"Fn::Split": []any{"s3://", ref(param)}}}}}}}
	}
	objects := map[string]map[string]any{"Truststore": object("TruststoreUri"), "CcfCertificate": object("CcfCertificateUri"), "AefCa": object("AefCaUri")}
	out := map[permission]bool{}
	for _, pol := range functionPolicies(t, tp, logicalID) {
		stmts, ok := path(pol, "Statement").([]any)
		if !ok {
			t.Fatalf("%s: a policy that is not an inline document (a SAM policy template?): %v", logicalID, pol)
		}
		for _, st := range stmts {
			st, present := ifValue(t, st) // statements under a condition: as deployed with sampleConditions
			if !present {
				continue
			}
			if path(st, "Effect") != "Allow" {
				t.Errorf("%s: statement %v is not an Allow", logicalID, st)
			}
			if reflect.DeepEqual(path(st, "Resource"), []any{getAtt("CcfClientKey", "Arn")}) &&
				!reflect.DeepEqual(path(st, "Condition"), map[string]any{"StringEquals": map[string]any{"kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "DIGEST"}}) {
				t.Errorf("%s: the grant on CcfClientKey is not bound to ECDSA_SHA_256 digests: %v", logicalID, path(st, "Condition"))
			}
			checkCondition(t, logicalID, st)
			resources, ok := path(st, "Resource").([]any)
			if !ok {
				resources = []any{path(st, "Resource")}
			}
			var actions []string
			for _, a := range path(st, "Action").([]any) {
				a, _ := ifValue(t, a)
				actions = append(actions, strs(a)...)
			}
			for _, action := range actions {
				if strings.Contains(action, "*") {
					t.Errorf("%s: wildcard action %s", logicalID, action)
				}
				for _, r := range resources {
					r, present := ifValue(t, r)
					if !present {
						continue
					}
					var name string
					for n, o := range objects {
						if reflect.DeepEqual(r, o) {
							name = n
						}
					}
					switch {
					case name != "":
					case reflect.DeepEqual(r, anyKeyOfTheAccount):
						name = taggedKeys // checkCondition saw the tag condition
					case len(refsIn(r)) == 1 && reflect.DeepEqual(r, getAtt(refsIn(r)[0], "Arn")):
						name = refsIn(r)[0]
					default:
						t.Errorf("%s: resource %v is not a template resource's ARN or an object of a parameter", logicalID, r)
						continue
					}
					out[permission{action, name}] = true
				}
			}
		}
	}
	return out
}

// anyKeyOfTheAccount is the resource of the grants on the stack's tagged keys.
var anyKeyOfTheAccount = map[string]any{"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}

// functionPolicies are the policy documents of a function's role: its Policies (SAM makes the
// role), or those of the AWS::IAM::Policy resources attached to its explicit Role, which it
// must depend on (so it never runs before its grants exist).
func functionPolicies(t *testing.T, tp *template, logicalID string) []any {
	t.Helper()
	fn := tp.resources("AWS::Serverless::Function")[logicalID]
	role := props(fn)["Role"]
	if role == nil {
		policies, _ := props(fn)["Policies"].([]any)
		if len(policies) == 0 {
			t.Fatalf("%s has no Policies", logicalID)
		}
		return policies
	}
	roleID := refsIn(role)
	if len(roleID) != 1 || !reflect.DeepEqual(role, getAtt(roleID[0], "Arn")) || tp.resources("AWS::IAM::Role")[roleID[0]] == nil {
		t.Fatalf("%s: Role %v is not a role of the template", logicalID, role)
	}
	var docs []any
	for id, pol := range tp.resources("AWS::IAM::Policy") {
		if !slices.ContainsFunc(props(pol)["Roles"].([]any), func(r any) bool { return reflect.DeepEqual(r, ref(roleID[0])) }) {
			continue
		}
		if fn["DependsOn"] != id && !slices.Contains(strs(fn["DependsOn"]), id) {
			t.Errorf("%s does not depend on %s, the policy of its role", logicalID, id)
		}
		docs = append(docs, props(pol)["PolicyDocument"])
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no AWS::IAM::Policy attached to %s", logicalID, roleID[0])
	}
	return docs
}

// checkCondition: a statement's condition is one of the forms the recorder checks the calls
// against; anything else would go untested.
func checkCondition(t *testing.T, logicalID string, st any) {
	t.Helper()
	cond := path(st, "Condition")
	stack := ref("AWS::StackName")
	context := map[string]any{"kms:EncryptionContextKeys": []any{"capif:stack", "capif:kid"}}
	known := []any{
		nil,
		map[string]any{"StringEquals": map[string]any{"kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "DIGEST"}},
		map[string]any{"StringEquals": map[string]any{"aws:ResourceTag/capif:stack": stack, "kms:MessageType": "DIGEST"}},
		map[string]any{"StringEquals": map[string]any{"aws:ResourceTag/capif:stack": stack}},
		map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:capif:stack": stack}, "ForAllValues:StringEquals": context},
		map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:capif:stack": stack, "kms:DataKeyPairSpec": []any{"ECC_NIST_P256", "RSA_2048"}},
			"ForAllValues:StringEquals": context},
		map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:LeadingKeys": []any{"K#signing"}}},
	}
	if !slices.ContainsFunc(known, func(k any) bool { return reflect.DeepEqual(k, cond) }) {
		t.Errorf("%s: statement %v has a condition the recorder does not check", logicalID, path(st, "Sid"))
	}
	tagged := reflect.DeepEqual(path(st, "Resource"), anyKeyOfTheAccount)
	if tagged != (path(cond, "StringEquals", "aws:ResourceTag/capif:stack") != nil) {
		t.Errorf("%s: statement %v: a grant on every key of the account goes with the capif:stack tag condition, and only it", logicalID, path(st, "Sid"))
	}
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
	// Deployed with TokenAlg=RS256: the RSA key signs and both keys are published, so every
	// statement of the token function's role is exercised.
	sampleConditions["IsRs256"], sampleRefs["TokenAlg"] = true, "RS256"
	t.Cleanup(func() { sampleConditions["IsRs256"], sampleRefs["TokenAlg"] = false, "ES256" })

	devCA, err := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// The CCF's certificate towards AEFs: its key in local-kms, issued by a CCF CA that the
	// stand-in AEF trusts; aef-1 gets the AEF's root, so revocations push to it.
	ccf := newCCFIdentity(t)
	aefs := aeftest.Start(t)
	aefs.TrustClients(ccf.ca.Pool())
	root := aefs.Root("aef-1")
	if err := security.New(ds.store, ds.store, nil, nil, nil, security.Config{}).ImportRegistry(context.Background(),
		security.RegistryDoc{AEFs: []security.AEFRecord{{AefID: "aef-1", AefSecurityRoot: &root}}}); err != nil {
		t.Fatal(err)
	}
	objects := map[string][]byte{sampleRefs["TruststoreUri"]: devCA, sampleRefs["CcfCertificateUri"]: ccf.certPEM, sampleRefs["AefCaUri"]: aefs.CA.PEM}
	fakeS3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := objects["s3:/"+r.URL.Path]; ok && r.Method == http.MethodGet {
			_, _ = w.Write(b)
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
		if env["CAPIF_CCF_KMS_KEY"] != "" {
			env["CAPIF_CCF_KMS_KEY"] = ccf.keyID
		}
		if f.signs {
			// The token function reads the key set at each request here, so the rotation below
			// reaches it at once (60 s later on Lambda).
			env["CAPIF_KEYSET_REFRESH"] = "1ms"
		}
		cfg, err := lambdaapp.ConfigFromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		rec := &callRecorder{ds: ds, ccf: ccf.keyID, perms: map[permission]int{}}
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
	if len(aefs.Pushes("aef-1")) == 0 {
		t.Error("no revocation was pushed to aef-1: the CCF's certificate was not exercised")
	}
	for _, w := range workers {
		if w.cmd == settings.Rotator {
			t.Run(w.logicalID, func(t *testing.T) {
				recorders[w.logicalID] = runRotation(t, ds, w, logger, func(t *testing.T) string {
					return runFlow(t, invoke, notif.URL+"/after-rotation").token
				})
			})
			continue
		}
		t.Run(w.logicalID, func(t *testing.T) {
			env := functionEnv(t, w.logicalID, ds)
			env["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "true"
			env["CAPIF_CCF_KMS_KEY"] = ccf.keyID
			cfg, _, err := settings.Load(settings.Worker, nil, func(k string) string { return env[k] }, settings.Options{Name: "worker"})
			if err != nil {
				t.Fatal(err)
			}
			rec := &callRecorder{ds: ds, ccf: ccf.keyID, perms: map[permission]int{}}
			wk, err := lambdaapp.NewWorker(context.Background(), cfg, lambdaapp.Options{Logger: logger, AWSAPIOptions: []func(*middleware.Stack) error{rec.middleware},
				Backends: []app.Backend{kmsapp.CCF}})
			if err != nil {
				t.Fatal(err)
			}
			defer wk.Close()
			recorders[w.logicalID] = rec
			pushes := len(aefs.Pushes("aef-1"))
			seeded := seedOwed(t, ds, notif.URL+"/worker", root)
			payload, err := os.ReadFile(filepath.Join(eventsDir(), w.event))
			if err != nil {
				t.Fatal(err)
			}
			before := delivered.Load()
			// The template's Timeout: a run with less than its tail left claims nothing.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := wk.Handle(ctx, payload)
			if err != nil || rep.Delivered < 2 || delivered.Load() == before || len(aefs.Pushes("aef-1")) == pushes {
				t.Fatalf("run: %+v, %v; the AEF got %d pushes before, %d after", rep, err, pushes, len(aefs.Pushes("aef-1")))
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

// runRotation runs the rotation function from its scheduled event on the empty key set of a
// deployment that signed with CAPIF_KMS_KEY_IDS: it records those keys (GetPublicKey) and
// publishes a wrapped successor (GenerateDataKeyPairWithoutPlaintext). Handed over at once (as
// capif-admin keys retire -now would), the successor signs the next token of the token function
// (its one Decrypt): token is that function's flow, returning its token.
func runRotation(t *testing.T, ds dataset, w worker, logger *slog.Logger, token func(t *testing.T) string) *callRecorder {
	t.Helper()
	env := functionEnv(t, w.logicalID, ds)
	cfg, _, err := settings.Load(settings.Rotator, nil, func(k string) string { return env[k] }, settings.Options{Name: "rotator"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &callRecorder{ds: ds, leadingKey: "K#signing", perms: map[permission]int{}}
	rot, err := lambdaapp.NewRotator(context.Background(), cfg, kmsapp.Rotation, lambdaapp.Options{Logger: logger,
		AWSAPIOptions: []func(*middleware.Stack) error{rec.middleware}})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := os.ReadFile(filepath.Join(eventsDir(), w.event))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rot.Handle(context.Background(), payload)
	if err != nil {
		t.Fatalf("first run: %+v, %v", rep, err)
	}
	handOver(t, ds, rep, app.KeyWindows(cfg), cfg.KMSKeyIDs, token)
	return rec
}

// handOver checks the first rotation run's work (rep) on a deployment that signed with the
// CAPIF_KMS_KEY_IDS legacy: its first key still signs, the others and the new wrapped key are
// published. It then hands over to the new key at once, as capif-admin keys retire -now would,
// and checks that the next token (token) names the new kid.
func handOver(t *testing.T, ds dataset, rep lambdaapp.RotationReport, windows security.KeyWindows, legacy []string, token func(t *testing.T) string) {
	t.Helper()
	if rep.Published == "" {
		t.Fatalf("the first run published no key: %+v", rep)
	}
	set, err := ds.store.LoadKeySet(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	signing, _ := set.Signer(time.Now())
	if signing.Kid != legacy[0] || len(set.Keys) != len(legacy)+1 {
		t.Fatalf("after the first run the set signs with %s and holds %d keys; want %s, the first of CAPIF_KMS_KEY_IDS %v, and the new key", signing.Kid, len(set.Keys), legacy[0], legacy)
	}
	if _, err := (envelope.Manager{Keys: ds.store, Windows: windows}).Retire(context.Background(), signing.Kid, true); err != nil {
		t.Fatal(err)
	}
	tok := token(t)
	head, _, _ := strings.Cut(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(head)
	if !strings.Contains(string(raw), `"kid":"`+rep.Published+`"`) {
		t.Errorf("after the hand-over the token's header is %s, want the kid %s", raw, rep.Published)
	}
}

func cmpPerm(a, b permission) int {
	return strings.Compare(a.resource+" "+a.action, b.resource+" "+b.action)
}

// ccfIdentity is a CCF client certificate whose key is in local-kms, as `capif-admin ccf-csr`
// and an operator's CA make one.
type ccfIdentity struct {
	keyID   string
	ca      *devpki.CA
	certPEM []byte
}

func newCCFIdentity(t *testing.T) ccfIdentity {
	t.Helper()
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := awskms.NewFromConfig(cfg)
	key, err := client.CreateKey(ctx, &awskms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify,
		Description: aws.String("tests/lambda CCF client certificate")})
	if err != nil {
		t.Fatal(err)
	}
	id := ccfIdentity{keyID: aws.ToString(key.KeyMetadata.KeyId)}
	pub, err := kms.PublicKeyOf(ctx, client, id.keyID)
	if err != nil {
		t.Fatal(err)
	}
	if id.ca, err = devpki.NewCA("tests/lambda CCF CA"); err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: security.DefaultCCFName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, id.ca.Cert, pub, id.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	id.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return id
}
