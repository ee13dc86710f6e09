package lambdaapp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/capifcore/capif-security/shared/awsretry"
)

func TestS3ObjectURL(t *testing.T) {
	for _, tc := range []struct {
		name, region, endpoint string
		in                     GetObjectInput
		want                   string
	}{
		{"virtual-hosted on AWS", "eu-west-1", "", GetObjectInput{Bucket: "trust-bucket", Key: "mtls/truststore.pem"},
			"https://trust-bucket.s3.eu-west-1.amazonaws.com/mtls/truststore.pem"},
		{"a version", "eu-west-1", "", GetObjectInput{Bucket: "b-1", Key: "k", VersionID: "3/L4kqtJl+cRt"},
			"https://b-1.s3.eu-west-1.amazonaws.com/k?versionId=3%2FL4kqtJl%2BcRt"},
		{"China partition", "cn-north-1", "", GetObjectInput{Bucket: "b-1", Key: "k"}, "https://b-1.s3.cn-north-1.amazonaws.com.cn/k"},
		{"a dotted bucket: path style", "eu-west-1", "", GetObjectInput{Bucket: "my.bucket", Key: "k"},
			"https://s3.eu-west-1.amazonaws.com/my.bucket/k"},
		{"an IP endpoint: path style", "eu-west-1", "http://127.0.0.1:9000", GetObjectInput{Bucket: "trust-bucket", Key: "a b/c+d.pem"},
			"http://127.0.0.1:9000/trust-bucket/a%20b/c%2Bd.pem"},
		{"a named endpoint: virtual-hosted", "eu-west-1", "https://s3.example.net/", GetObjectInput{Bucket: "trust-bucket", Key: "k"},
			"https://trust-bucket.s3.example.net/k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := newS3Reader(aws.Config{Region: tc.region}, tc.endpoint).objectURL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tc.want {
				t.Errorf("%s, want %s", u, tc.want)
			}
		})
	}
	if _, err := newS3Reader(aws.Config{}, "").objectURL(GetObjectInput{Bucket: "b-1", Key: "k"}); err == nil {
		t.Error("no Region: accepted")
	}
}

// The GET is SigV4-signed for S3 with the configuration's credentials and Region: the server
// recomputes the signature from what it received.
func TestS3GetIsSigned(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "session-token")
	var checked bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if !strings.HasPrefix(got, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(got, "/eu-west-1/s3/aws4_request") {
			t.Errorf("Authorization %q", got)
		}
		if r.Header.Get("X-Amz-Security-Token") != "session-token" || r.Header.Get("X-Amz-Content-Sha256") != emptySHA256 {
			t.Errorf("headers %v", r.Header)
		}
		if r.URL.Query().Get("versionId") != "v 1" {
			t.Errorf("query %q", r.URL.RawQuery)
		}
		at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
		if err != nil {
			t.Fatal(err)
		}
		again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
		again.Header.Set("X-Amz-Content-Sha256", emptySHA256)
		c, _ := creds.Retrieve(context.Background())
		s := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
		if err := s.SignHTTP(context.Background(), c, again, emptySHA256, "s3", "eu-west-1", at); err != nil {
			t.Fatal(err)
		}
		if want := again.Header.Get("Authorization"); got != want {
			t.Errorf("signature\n%s\nwant\n%s", got, want)
		}
		checked = true
		_, _ = w.Write([]byte("bundle"))
	}))
	defer srv.Close()
	r := newS3Reader(aws.Config{Region: "eu-west-1", Credentials: creds}, srv.URL)
	b, err := r.getObject(context.Background(), GetObjectInput{Bucket: "trust-bucket", Key: "dir/a b.pem", VersionID: "v 1"}, 100)
	if err != nil || string(b) != "bundle" || !checked {
		t.Fatalf("%q, %v (checked %v)", b, err, checked)
	}
}

// Missing credentials are a broken deployment (awsretry.Outage), tried once.
func TestS3GetWithoutCredentials(t *testing.T) {
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { n++ }))
	defer srv.Close()
	failing := awsretry.WrapCredentials(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, context.DeadlineExceeded
	}))
	for _, p := range []aws.CredentialsProvider{nil, failing} {
		_, err := newS3Reader(aws.Config{Region: "eu-west-1", Credentials: p}, srv.URL).getObject(context.Background(), GetObjectInput{Bucket: "b-1", Key: "k"}, 10)
		if _, ok := awsretry.Outage(err); !ok {
			t.Errorf("%v: not an outage", err)
		}
	}
	if n != 0 {
		t.Errorf("%d requests sent without credentials", n)
	}
}
