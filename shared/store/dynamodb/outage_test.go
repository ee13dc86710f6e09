package dynamodb

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
)

// A broken deployment (tables missing, no usable credentials) is not the caller's fault and not
// a bug: every operation fails with ErrUnavailable (the edge answers 503 with Retry-After), and
// one ERROR line names the dependency, the tables and the cause.
func TestOutageIsUnavailable(t *testing.T) {
	cfg := awsConfig(t)
	noCreds := cfg.Copy()
	noCreds.Credentials = awsretry.WrapCredentials(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no EC2 IMDS role found")
	})) // as sdkconfig.Load wraps every provider
	for _, tc := range []struct {
		name  string
		cfg   aws.Config
		cause string
	}{
		{"tables missing", cfg, "does not exist"},
		{"no credentials", noCreds, "no usable AWS credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s, err := New(tc.cfg, Options{Tables: TablesWithPrefix("absent-" + time.Now().Format("150405.000000") + "-"), ClientOptions: []func(*ddb.Options){noChecksum},
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err = s.Load(ctx, security.Query{CallerID: "inv-1", APIInvokerID: "inv-1"})
			if !errors.Is(err, security.ErrUnavailable) || !strings.Contains(err.Error(), tc.cause) {
				t.Errorf("Load: %v, want ErrUnavailable naming %q", err, tc.cause)
			}
			if _, err := s.Due(ctx, time.Now()); !errors.Is(err, security.ErrUnavailable) {
				t.Errorf("Due: %v, want ErrUnavailable", err)
			}
			line := logs.String()
			if !strings.Contains(line, `"level":"ERROR"`) || !strings.Contains(line, `"dependency":"DynamoDB"`) || !strings.Contains(line, tc.cause) || !strings.Contains(line, "contexts") {
				t.Errorf("log: %s", line)
			}
		})
	}
}
