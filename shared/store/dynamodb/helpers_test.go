package dynamodb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/dynamodb/dynamodbtest"
)

// One set of tables per test process: the contract suite and the tests here use ids of their
// own, so they share tables the way deployed functions do.
var (
	tablesOnce sync.Once
	tablesErr  error
	testTables = TablesWithPrefix("capif-test-" + randomHex(4) + "-")
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// awsConfig is the SDK configuration the way the functions load it: the endpoint comes from
// AWS_ENDPOINT_URL_DYNAMODB. Credentials and region default to DynamoDB Local's dummies when the
// environment has none (scripts/with-peers.sh sets them).
func awsConfig(t testing.TB) aws.Config {
	t.Helper()
	testenv.DynamoDBEndpoint(t)
	var opts []func(*config.LoadOptions) error
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	if os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
		opts = append(opts, config.WithRegion("us-east-1"))
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newStore returns a Store on the shared test tables (created on first use with CreateTables).
func newStore(t testing.TB, opts ...func(*Options)) *Store {
	t.Helper()
	cfg := awsConfig(t)
	// DynamoDB Local sends no x-amz-crc32 header on error responses, which makes the SDK log a
	// checksum warning for every failed condition; real DynamoDB sends it.
	o := Options{Tables: testTables, ClientOptions: []func(*ddb.Options){noChecksum}}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	tablesOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := New(cfg, Options{Tables: testTables, ClientOptions: []func(*ddb.Options){noChecksum}})
		if err != nil {
			tablesErr = err
			return
		}
		tablesErr = admin.CreateTables(ctx)
	})
	if tablesErr != nil {
		t.Fatalf("creating the test tables: %v", tablesErr)
	}
	return s
}

// admin runs the registry operations on s, as the admin command does.
func admin(s *Store) *security.Service {
	return security.New(s, s, nil, &securitytest.Notifier{}, nil, security.Config{})
}

func noChecksum(o *ddb.Options) { o.DisableValidateResponseChecksum = true }

func withRecorder(r *dynamodbtest.Recorder) func(*Options) {
	return func(o *Options) { o.ClientOptions = append(o.ClientOptions, r.ClientOption()) }
}

func withFault(f func(ctx context.Context, op string) error) func(*Options) {
	return func(o *Options) { o.ClientOptions = append(o.ClientOptions, dynamodbtest.InjectFault(f)) }
}

func withClientOption(f func(*ddb.Options)) func(*Options) {
	return func(o *Options) { o.ClientOptions = append(o.ClientOptions, f) }
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

// mustJSON deep-copies from into to through JSON.
func mustJSON(from, to any) {
	b, err := json.Marshal(from)
	if err == nil {
		err = json.Unmarshal(b, to)
	}
	if err != nil {
		panic(err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
