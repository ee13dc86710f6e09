package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/store/dynamodb/dynamodbtest"
)

// Tests that need no DynamoDB.

func TestTableDefinitions(t *testing.T) {
	defs := TableDefinitions("x-")
	want := map[string]string{"x-contexts": "apiInvokerId", "x-registry": "pk", "x-outbox": "id"}
	if len(defs) != len(want) {
		t.Fatalf("%d definitions, want %d", len(defs), len(want))
	}
	for _, d := range defs {
		key, ok := want[aws.ToString(d.TableName)]
		switch {
		case !ok:
			t.Errorf("unexpected table %s", aws.ToString(d.TableName))
		case len(d.KeySchema) != 1 || aws.ToString(d.KeySchema[0].AttributeName) != key || d.KeySchema[0].KeyType != types.KeyTypeHash:
			t.Errorf("%s: key schema %+v, want %s HASH", aws.ToString(d.TableName), d.KeySchema, key)
		case len(d.AttributeDefinitions) != 1 || d.AttributeDefinitions[0].AttributeType != types.ScalarAttributeTypeS:
			t.Errorf("%s: attribute definitions %+v, want one string key", aws.ToString(d.TableName), d.AttributeDefinitions)
		case d.BillingMode != types.BillingModePayPerRequest:
			t.Errorf("%s: billing mode %s", aws.ToString(d.TableName), d.BillingMode)
		}
		if err := sameSchema(d, &types.TableDescription{KeySchema: d.KeySchema, AttributeDefinitions: d.AttributeDefinitions}); err != nil {
			t.Errorf("a table as defined does not match its definition: %v", err)
		}
	}
}

func TestNewValidatesAndCallsNothing(t *testing.T) {
	// Any HTTP request at construction fails the test (cold start rule).
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""),
		HTTPClient: clientFunc(func(*http.Request) (*http.Response, error) {
			t.Error("New sent a request")
			return nil, errors.New("no")
		})}
	if _, err := New(cfg, Options{Tables: TablesWithPrefix("p-")}); err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, bad := range []Tables{{"a", "", "c"}, {"a", "a", "c"}} {
		if _, err := New(cfg, Options{Tables: bad}); err == nil {
			t.Errorf("New accepted tables %+v", bad)
		}
	}
}

type clientFunc func(*http.Request) (*http.Response, error)

func (f clientFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// fail turns a transient AWS error (awsretry.Transient) and a broken deployment
// (awsretry.Outage) into ErrUnavailable, and nothing else.
func TestFail(t *testing.T) {
	s := &Store{log: discardLogger()}
	if err := s.fail("op", &types.ProvisionedThroughputExceededException{}); !errors.Is(err, security.ErrUnavailable) {
		t.Errorf("fail(throttled) = %v, want ErrUnavailable", err)
	}
	if err := s.fail("op", &types.ResourceNotFoundException{}); !errors.Is(err, security.ErrUnavailable) {
		t.Errorf("fail(missing table) = %v, want ErrUnavailable (a broken deployment: 503 and an ERROR line)", err)
	}
	if err := s.fail("op", &types.ConditionalCheckFailedException{}); errors.Is(err, security.ErrUnavailable) {
		t.Errorf("fail(condition) = %v, must not be ErrUnavailable", err)
	}
}

func TestRegistryKey(t *testing.T) {
	short := registryKey(kindInterface, "fqdn:a.example.com|port:443|prefix:/x")
	if short != "I#fqdn:a.example.com|port:443|prefix:/x" {
		t.Errorf("short key rewritten: %q", short)
	}
	long := "fqdn:a.example.com|port:443|prefix:/" + strings.Repeat("p", 3000)
	k1, k2 := registryKey(kindInterface, long), registryKey(kindInterface, long+"q")
	if len(k1) > maxKeyBytes || !strings.HasPrefix(k1, kindInterface+"sha256:") {
		t.Errorf("long key = %q (%d bytes), want a digest", k1, len(k1))
	}
	if k1 == k2 || k1 != registryKey(kindInterface, long) {
		t.Error("digest keys must be stable and distinct")
	}
}

func TestItemRoundTrip(t *testing.T) {
	port := 8443
	sc := &security.SecurityContext{APIInvokerID: "inv", NotificationDestination: "https://x.example.com/cb", SupportedFeatures: "4", Version: 7,
		Entries: []security.Entry{
			{AefID: "aef", APIID: "api", PrefSecurityMethods: []capif.SecurityMethod{capif.PSK}, SelSecurityMethod: capif.PSK, PSK: "k",
				Targets: []security.Target{{AefID: "aef", APIID: "api", APIName: "n"}}},
			{InterfaceDetails: &capif.InterfaceDescription{Ipv4Addr: "192.0.2.1", Port: &port}, PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH, "FUTURE"},
				SelSecurityMethod: capif.OAUTH, AuthorizationFlow: []string{"a"}, GrantType: []string{"z"},
				Targets: []security.Target{{AefID: "aef", APIID: "api2", APIName: "n2"}, {AefID: "aef2", APIID: "api", APIName: "n"}}},
		}}
	item, err := contextItemOf(sc, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeContext(item)
	if err != nil {
		t.Fatal(err)
	}
	if dump(got) != dump(sc) {
		t.Errorf("round trip\n got %s\nwant %s", dump(got), dump(sc))
	}
	ids := item[attrAPIIDs].(*types.AttributeValueMemberSS).Value
	if fmt.Sprint(ids) != "[api api2]" {
		t.Errorf("apiIds = %v, want [api api2]", ids)
	}
	p := security.Principal{ID: "i", Role: security.RoleInvoker, SecretHash: security.HashSecret("s")}
	av, err := encodeDoc(&p)
	if err != nil {
		t.Fatal(err)
	}
	var back security.Principal
	if err := decodeDoc(av, &back); err != nil || dump(back) != dump(p) {
		t.Errorf("principal round trip = %+v, %v", back, err)
	}
	// Only the JSON string form is stored, so anything else is a corrupt item, not a record.
	for _, bad := range []types.AttributeValue{nil, &types.AttributeValueMemberM{}, &types.AttributeValueMemberN{Value: "1"}} {
		if err := decodeDoc(bad, &back); err == nil {
			t.Errorf("decodeDoc(%T) succeeded", bad)
		}
	}
}

func TestSplit(t *testing.T) {
	small := func(n int) []types.TransactWriteItem {
		out := make([]types.TransactWriteItem, n)
		for i := range out {
			out[i] = types.TransactWriteItem{Put: &types.Put{Item: map[string]types.AttributeValue{"doc": &types.AttributeValueMemberS{Value: "x"}}}}
		}
		return out
	}
	big := small(10)
	for _, it := range big {
		it.Put.Item["doc"] = &types.AttributeValueMemberS{Value: strings.Repeat("x", 390<<10)}
	}
	tests := []struct {
		name  string
		items []types.TransactWriteItem
		want  []int
	}{
		{"none", nil, nil},
		{"one transaction", small(100), []int{100}},
		{"by count", small(250), []int{100, 100, 50}},
		{"by size", big, []int{7, 3}}, // 7 × 390 KiB fits in 3 MiB, 8 do not
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, g := range split(tc.items) {
				got = append(got, len(g))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("split sizes = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRetryPolicy: throttling and transaction conflicts are retried as awsretry.DynamoDB
// says, whatever retryer the aws.Config carries; then ErrUnavailable. No request leaves the
// process (the fault answers every attempt).
func TestRetryPolicy(t *testing.T) {
	configRetryer := func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts, o.MaxBackoff = 7, time.Millisecond })
	}
	tests := []struct {
		name    string
		retryer func() aws.Retryer
		fault   error
		want    int
	}{
		{"throughput exceeded", nil, &types.ProvisionedThroughputExceededException{}, awsretry.DynamoDB.Attempts},
		{"the config's retryer does not apply", configRetryer, &types.ThrottlingException{}, awsretry.DynamoDB.Attempts},
		{"transaction conflicts are retried", nil, &types.TransactionConflictException{}, awsretry.DynamoDB.Attempts},
		{"validation errors are not", nil, &smithy.GenericAPIError{Code: "ValidationException"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""),
				BaseEndpoint: aws.String("http://127.0.0.1:9"), Retryer: tc.retryer,
				HTTPClient: clientFunc(func(*http.Request) (*http.Response, error) {
					t.Error("a request was sent")
					return nil, errors.New("no")
				})}
			rec := &dynamodbtest.Recorder{}
			s, err := New(cfg, Options{Tables: TablesWithPrefix("p-"), Logger: discardLogger(),
				ClientOptions: []func(*ddb.Options){rec.ClientOption(), dynamodbtest.InjectFault(func(context.Context, string) error { return tc.fault })}})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Delivered(context.Background(), "x")
			if got := len(rec.Calls()); got != tc.want {
				t.Errorf("%d attempts, want %d", got, tc.want)
			}
			if awsretry.Transient(tc.fault) != errors.Is(err, security.ErrUnavailable) {
				t.Errorf("Delivered = %v; ErrUnavailable expected exactly for transient faults", err)
			}
		})
	}
}
