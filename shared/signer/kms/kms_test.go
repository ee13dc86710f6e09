package kms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/signertest"
)

const (
	idA = "1234abcd-12ab-34cd-56ef-1234567890ab"
	idB = "0987dcba-09fe-87dc-65ba-ab0987654321"
	idC = "mrk-1234abcd12ab34cd56ef1234567890ab"
)

func TestNewKeyReferences(t *testing.T) {
	tests := []struct {
		ref     string
		wantKid string // "" for an alias, resolved later
		wantErr bool
	}{
		{ref: idA, wantKid: idA},
		{ref: idC, wantKid: idC},
		{ref: "arn:aws:kms:eu-west-1:111122223333:key/" + idA, wantKid: idA},
		{ref: "arn:aws-cn:kms:cn-north-1:111122223333:key/" + idC, wantKid: idC},
		{ref: "alias/capif-signing"},
		{ref: "arn:aws:kms:eu-west-1:111122223333:alias/capif-signing"},
		{ref: "", wantErr: true},
		{ref: "alias/", wantErr: true},
		{ref: "capif-signing", wantErr: true},
		{ref: "1234abcd-12ab-34cd-56ef-1234567890a", wantErr: true},
		{ref: "1234abcd_12ab-34cd-56ef-1234567890ab", wantErr: true},
		{ref: "1234abcg-12ab-34cd-56ef-1234567890ab", wantErr: true},
		{ref: "mrk-1234", wantErr: true},
		{ref: "arn:aws:s3:eu-west-1:111122223333:key/" + idA, wantErr: true},
		{ref: "arn:aws:kms:eu-west-1:111122223333:key/not-a-uuid", wantErr: true},
		{ref: "arn:aws:kms:eu-west-1:111122223333:alias/", wantErr: true},
		{ref: "arn:aws:kms:eu-west-1:key/" + idA, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			rec := record(newFake())
			s, err := New(rec, []string{tc.ref}, capif.ES256)
			if tc.wantErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := s.keys[0]
			if got := k.resolved.done.Load(); got != (tc.wantKid != "") {
				t.Fatalf("resolved at construction = %v", got)
			}
			if tc.wantKid != "" && k.resolved.val.keyID != tc.wantKid {
				t.Errorf("kid = %q, want %q", k.resolved.val.keyID, tc.wantKid)
			}
			if rec.total() != 0 {
				t.Error("construction called KMS")
			}
		})
	}
	// The error names the setting's one variable (settings.Table), not the deprecated alias.
	if _, err := New(newFake(), nil, capif.ES256); err == nil || !strings.Contains(err.Error(), "CAPIF_KMS_KEY_IDS)") {
		t.Errorf("New without keys: %v", err)
	}
	if _, err := New(newFake(), nil, capif.ES256); err == nil {
		t.Error("an empty key list was accepted")
	}
	if _, err := New(nil, []string{idA}, capif.ES256); err == nil {
		t.Error("a nil client was accepted")
	}
}

// The whole path on the fake: sign with the first key, publish all, verify with stock golang-jwt.
func TestFakeSignAndRotation(t *testing.T) {
	f := newFake()
	f.addKey(t, idA, types.KeyStateEnabled)
	f.addKey(t, idB, types.KeyStateEnabled)
	old, _ := New(f, []string{idA}, capif.ES256)
	oldToken, err := old.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}
	rotated, _ := New(f, []string{fakeARN + idB, idA}, capif.ES256)
	newToken, err := rotated.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := rotated.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(jwks); !slices.Equal(got, []string{idB, idA}) {
		t.Fatalf("JWKS kids = %v, want [B A]", got)
	}
	for name, tc := range map[string]struct{ token, kid string }{"old": {oldToken, idA}, "new": {newToken, idB}} {
		tok, _, err := signertest.Parse(tc.token, jwks)
		if err != nil {
			t.Errorf("%s token: %v", name, err)
			continue
		}
		if tok.Header["kid"] != tc.kid {
			t.Errorf("%s token kid = %v, want %s", name, tok.Header["kid"], tc.kid)
		}
	}
}

// KMS keys reported disabled, pending deletion or deleted leave the JWKS; GetPublicKey is not
// asked again about them, and an alias whose DescribeKey says disabled costs no GetPublicKey.
func TestUnusableKeysLeaveTheJWKS(t *testing.T) {
	f := newFake()
	const idD, idE = "dddddddd-dddd-dddd-dddd-dddddddddddd", "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee"
	f.addKey(t, idA, types.KeyStateEnabled)
	f.addKey(t, idB, types.KeyStateDisabled)
	f.addKey(t, idC, types.KeyStatePendingDeletion)
	f.addKey(t, idD, types.KeyStateDisabled)
	f.aliases["alias/retired"] = idD
	rec := record(f)
	s, _ := New(rec, []string{idA, idB, idC, "alias/retired", idE /* deleted */, "alias/gone"}, capif.ES256)
	for range 3 {
		jwks, err := s.JWKS(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := kids(jwks); !slices.Equal(got, []string{idA}) {
			t.Fatalf("JWKS kids = %v, want only A", got)
		}
	}
	for _, id := range []string{idA, idB, idC, idE} {
		if n := rec.count("GetPublicKey", id); n != 1 {
			t.Errorf("GetPublicKey(%s) called %d times, want 1", id, n)
		}
	}
	if n := rec.count("GetPublicKey", fakeARN+idD); n != 0 {
		t.Errorf("GetPublicKey called %d times for a key DescribeKey reported disabled", n)
	}
	if n := rec.count("DescribeKey", ""); n != 2 {
		t.Errorf("DescribeKey called %d times, want once per alias", n)
	}
}

// A transient failure fails the JWKS (no partial set) and is not remembered.
func TestTransientFailuresAreRetriedLater(t *testing.T) {
	f := newFake()
	f.addKey(t, idA, types.KeyStateEnabled)
	f.addKey(t, idB, types.KeyStateEnabled)
	f.aliases["alias/new"] = idB
	rec := record(f)
	s, _ := New(rec, []string{"alias/new", idA}, capif.ES256)

	f.failNext("DescribeKey", &smithy.GenericAPIError{Code: "ThrottlingException"})
	if _, err := s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
		t.Fatalf("Sign with DescribeKey throttled: %v, want ErrUnavailable", err)
	}
	f.failNext("GetPublicKey", nil, &types.KMSInternalException{Message: aws.String("oops")})
	if _, err := s.JWKS(t.Context()); !errors.Is(err, security.ErrUnavailable) {
		t.Fatalf("JWKS with GetPublicKey failing: %v, want ErrUnavailable", err)
	}
	jwks, err := s.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(jwks); !slices.Equal(got, []string{idB, idA}) {
		t.Fatalf("JWKS kids = %v, want [B A]", got)
	}
	if _, err := s.Sign(t.Context(), claims()); err != nil {
		t.Fatal(err)
	}
	if n := rec.count("DescribeKey", ""); n != 2 { // one throttled, one answered
		t.Errorf("DescribeKey called %d times, want 2", n)
	}
	if n := rec.count("GetPublicKey", idA); n != 2 {
		t.Errorf("GetPublicKey(A) called %d times, want 2 (failed, then answered)", n)
	}
}

// A key that cannot make ES256 signatures is a configuration error, not a key to skip.
func TestWrongKeySpecIsAnError(t *testing.T) {
	wrong := &specClient{fakeKMS: newFake()}
	wrong.addKey(t, idA, types.KeyStateEnabled)
	wrong.aliases["alias/rsa"] = idA
	for _, ref := range []string{"alias/rsa", idA} {
		s, _ := New(wrong, []string{ref}, capif.ES256)
		if _, err := s.JWKS(t.Context()); err == nil || errors.Is(err, security.ErrUnavailable) {
			t.Errorf("%s: JWKS err = %v, want a plain error", ref, err)
		}
	}
}

// specClient reports every key as RSA.
type specClient struct{ *fakeKMS }

func (s *specClient) DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, o ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	out, err := s.fakeKMS.DescribeKey(ctx, in, o...)
	if err == nil {
		out.KeyMetadata.KeySpec = types.KeySpecRsa2048
	}
	return out, err
}

func (s *specClient) GetPublicKey(ctx context.Context, in *awskms.GetPublicKeyInput, o ...func(*awskms.Options)) (*awskms.GetPublicKeyOutput, error) {
	out, err := s.fakeKMS.GetPublicKey(ctx, in, o...)
	if err == nil {
		out.KeyUsage = types.KeyUsageTypeEncryptDecrypt
	}
	return out, err
}

func status(code int) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}},
		Err:      errors.New("http error"),
	}}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"throttling", &smithy.GenericAPIError{Code: "ThrottlingException"}, true},
		{"internal", &types.KMSInternalException{Message: aws.String("x")}, true},
		{"dependency timeout", &types.DependencyTimeoutException{Message: aws.String("x")}, true},
		{"key store unavailable", &types.KeyUnavailableException{Message: aws.String("x")}, true},
		{"retries exhausted", &retry.MaxAttemptsError{Attempt: 3, Err: errors.New("last")}, true},
		{"retry quota exhausted", fmt.Errorf("failed to get rate limit token, %w", ratelimit.QuotaExceededError{Available: 0, Requested: 5}), true},
		{"no connection", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}, true},
		{"HTTP 503 without a code", status(503), true},
		{"HTTP 429 without a code", status(429), true},
		{"HTTP 400 without a code", status(400), false},
		// A broken deployment: 503, and an ERROR line names the key and the cause.
		{"disabled key", &types.DisabledException{Message: aws.String("x")}, true},
		{"no such key", &types.NotFoundException{Message: aws.String("x")}, true},
		{"wrong key usage or spec (CAPIF_TOKEN_ALG)", &types.InvalidKeyUsageException{Message: aws.String("x")}, true},
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException"}, true},
		{"anything else", errors.New("boom"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.addKey(t, idA, types.KeyStateEnabled)
			f.failNext("Sign", tc.err)
			s, _ := New(f, []string{idA}, capif.ES256)
			_, err := s.Sign(t.Context(), claims())
			if err == nil {
				t.Fatal("Sign succeeded")
			}
			if got := errors.Is(err, security.ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(ErrUnavailable) = %v, want %v (err: %v)", got, tc.unavailable, err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("the KMS error is no longer in the chain: %v", err)
			}
		})
	}
}

// When the caller's context has ended, a failure is the caller's, not a 503.
func TestCancelledCallerIsNotUnavailable(t *testing.T) {
	f := newFake()
	f.addKey(t, idA, types.KeyStateEnabled)
	f.failNext("Sign", &smithy.GenericAPIError{Code: "ThrottlingException"})
	s, _ := New(f, []string{idA}, capif.ES256)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Sign(ctx, claims()); err == nil || errors.Is(err, security.ErrUnavailable) {
		t.Fatalf("err = %v, want a plain error", err)
	}
}

// The mapping must hold for errors as the real SDK builds them (retries included), not only for
// hand-made values: a stub KMS endpoint answers every call with one error.
func TestErrorMappingThroughTheSDK(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		errType      string
		unavailable  bool
		wantRequests int64
	}{
		{"throttled until retries run out", 400, "ThrottlingException", true, 3},
		{"internal error", 500, "KMSInternalException", true, 3},
		{"access denied", 400, "AccessDeniedException", true, 1},
		{"disabled key", 400, "DisabledException", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `{"__type":%q,"message":"stub"}`, tc.errType)
			}))
			defer srv.Close()
			s, err := NewFromConfig(stubConfig(), []string{idA}, capif.ES256, func(o *awskms.Options) { o.BaseEndpoint = aws.String(srv.URL) })
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Sign(t.Context(), claims())
			if err == nil {
				t.Fatal("Sign succeeded")
			}
			if got := errors.Is(err, security.ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(ErrUnavailable) = %v, want %v (err: %v)", got, tc.unavailable, err)
			}
			if got := requests.Load(); got != tc.wantRequests {
				t.Errorf("%d requests reached KMS, want %d", got, tc.wantRequests)
			}
		})
	}

	t.Run("nothing listening", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String()
		l.Close()
		s, _ := NewFromConfig(stubConfig(), []string{idA}, capif.ES256, func(o *awskms.Options) { o.BaseEndpoint = aws.String(url) })
		if _, err := s.JWKS(t.Context()); !errors.Is(err, security.ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
}

// stubConfig has fixed credentials and a retryer that does not sleep between attempts.
func stubConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: aws.NewCredentialsCache(staticCreds{}),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.Backoff = noBackoff{}
			})
		},
	}
}

type staticCreds struct{}

func (staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", Source: "test"}, nil
}

type noBackoff struct{}

func (noBackoff) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

// Concurrent first requests share the one DescribeKey and the one GetPublicKey per key.
func TestConcurrentFirstUse(t *testing.T) {
	f := newFake()
	f.addKey(t, idA, types.KeyStateEnabled)
	f.addKey(t, idB, types.KeyStateEnabled)
	f.aliases["alias/active"] = idA
	rec := record(f)
	s, _ := New(rec, []string{"alias/active", idB}, capif.ES256)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = s.Sign(t.Context(), claims())
			} else {
				_, err = s.JWKS(t.Context())
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := rec.count("DescribeKey", ""); n != 1 {
		t.Errorf("DescribeKey called %d times, want 1", n)
	}
	if a, b := rec.count("GetPublicKey", fakeARN+idA), rec.count("GetPublicKey", idB); a != 1 || b != 1 {
		t.Errorf("GetPublicKey calls: A %d, B %d; want 1 each", a, b)
	}
}

func TestGlobalES256IsUntouched(t *testing.T) {
	f := newFake()
	f.addKey(t, idA, types.KeyStateEnabled)
	s, _ := New(f, []string{idA}, capif.ES256)
	if _, err := s.Sign(t.Context(), claims()); err != nil {
		t.Fatal(err)
	}
	if m := jwt.GetSigningMethod("ES256"); m != jwt.SigningMethodES256 {
		t.Fatalf("the global ES256 method was replaced by %T", m)
	}
}
