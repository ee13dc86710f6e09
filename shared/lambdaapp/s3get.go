package lambdaapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/capifcore/capif-security/shared/awsretry"
)

// GetObjectInput is the one S3 call a function makes (GetObject; with a VersionID it is
// authorized as s3:GetObjectVersion). It is the Parameters the AWS API options see, as a
// client's input would be, so what counts or checks the SDK calls sees this one too.
type GetObjectInput struct {
	Bucket, Key, VersionID string
}

// s3Reader reads an S3 object with one SigV4-signed GET, under the awsretry.S3 policy, instead
// of the S3 client (whose code is most of a megabyte of every bootstrap for this one call).
type s3Reader struct {
	cfg aws.Config
	// endpoint is the S3 endpoint override (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL); ""
	// is AWS's regional endpoint.
	endpoint string
	client   aws.HTTPClient
	signer   *v4.Signer
	policy   awsretry.Policy
}

func newS3Reader(cfg aws.Config, endpoint string) *s3Reader {
	return &s3Reader{cfg: cfg, endpoint: endpoint, policy: awsretry.S3,
		client: awsretry.S3.HTTPClient(cfg.HTTPClient),
		// S3 signs the path as sent, not escaped twice.
		signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })}
}

// emptySHA256 is the payload hash of a GET.
var emptySHA256 = hex.EncodeToString(func() []byte { h := sha256.Sum256(nil); return h[:] }())

// getObject returns at most limit+1 bytes of the object, through the AWS API options (so the
// call is counted and recorded like a client's) and the S3 policy's retries.
func (r *s3Reader) getObject(ctx context.Context, in GetObjectInput, limit int64) ([]byte, error) {
	stack := middleware.NewStack("GetObject", smithyhttp.NewStackRequest)
	for _, opt := range r.cfg.APIOptions {
		if err := opt(stack); err != nil {
			return nil, err
		}
	}
	ctx = awsmiddleware.SetServiceID(ctx, "S3")
	ctx = awsmiddleware.SetOperationName(ctx, "GetObject")
	var body []byte // the stack passes a raw response no further than its deserialize step
	_, _, err := stack.HandleMiddleware(ctx, &in, middleware.HandlerFunc(func(ctx context.Context, _ any) (any, middleware.Metadata, error) {
		b, err := r.retrying(ctx, in, limit)
		body = b
		return nil, middleware.Metadata{}, err
	}))
	if err != nil {
		return nil, fmt.Errorf("operation error S3: GetObject, %w", err)
	}
	return body, nil
}

// retrying makes the policy's attempts, with full-jitter backoff, while the failure is
// awsretry.Transient and the caller's context lasts.
func (r *s3Reader) retrying(ctx context.Context, in GetObjectInput, limit int64) ([]byte, error) {
	backoff := retry.NewExponentialJitterBackoff(r.policy.MaxBackoff)
	for attempt := 1; ; attempt++ {
		b, err := r.attempt(ctx, in, limit)
		if err == nil || attempt >= r.policy.Attempts || ctx.Err() != nil || !awsretry.Transient(err) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return b, err
		}
		d, _ := backoff.BackoffDelay(attempt, err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("after %d attempts: %w", attempt, ctx.Err())
		case <-t.C:
		}
	}
}

// attempt is one signed GET, bounded by the policy's attempt timeout (the body read included).
func (r *s3Reader) attempt(ctx context.Context, in GetObjectInput, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.policy.AttemptTimeout)
	defer cancel()
	u, err := r.objectURL(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.URL = u // keeps RawPath: the path is signed as sent
	if r.cfg.Credentials == nil {
		return nil, &v4.SigningError{Err: errors.New("no credentials provider")}
	}
	creds, err := r.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if err := r.signer.SignHTTP(ctx, creds, req, emptySHA256, "s3", r.cfg.Region, time.Now().UTC()); err != nil {
		return nil, &v4.SigningError{Err: err}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &smithyhttp.RequestSendError{Err: err} // cut off mid-body: as unanswered
	}
	return b, nil
}

// objectURL is the object's URL: virtual-hosted style (bucket.host/key), or path style
// (host/bucket/key) for an IP or localhost endpoint and a bucket name that is no DNS label, as
// the S3 client chooses.
func (r *s3Reader) objectURL(in GetObjectInput) (*url.URL, error) {
	base := r.endpoint
	if base == "" {
		if r.cfg.Region == "" {
			return nil, errors.New("no AWS Region (AWS_REGION)")
		}
		suffix := "amazonaws.com"
		if strings.HasPrefix(r.cfg.Region, "cn-") {
			suffix = "amazonaws.com.cn"
		}
		base = "https://s3." + r.cfg.Region + "." + suffix
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("the S3 endpoint %q is not a URL", base)
	}
	host := u.Hostname()
	pathStyle := net.ParseIP(host) != nil || host == "localhost" || !dnsLabel(in.Bucket)
	prefix := strings.TrimSuffix(u.Path, "/")
	if pathStyle {
		prefix += "/" + in.Bucket
	} else {
		u.Host = in.Bucket + "." + u.Host
	}
	u.Path = prefix + "/" + in.Key
	u.RawPath = escapePath(u.Path)
	u.RawQuery = ""
	if in.VersionID != "" {
		u.RawQuery = "versionId=" + url.QueryEscape(in.VersionID)
	}
	return u, nil
}

// dnsLabel reports whether a bucket name can be a host name label (no dots: TLS wildcards).
func dnsLabel(b string) bool {
	if len(b) < 3 || len(b) > 63 || b[0] == '-' || b[len(b)-1] == '-' {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// escapePath percent-encodes every byte of p but the unreserved ones and '/' (S3's canonical
// URI of a key).
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// responseError is an S3 error answer as the SDK's clients give it: an API error with S3's
// code (from the XML body, else the status text) inside an HTTP response error carrying the
// status, so awsretry classifies it the same way.
func responseError(resp *http.Response) error {
	var body struct {
		Code      string `xml:"Code"`
		Message   string `xml:"Message"`
		RequestID string `xml:"RequestId"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = xml.Unmarshal(raw, &body)
	if body.Code == "" {
		body.Code = strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "")
	}
	fault := smithy.FaultClient
	if resp.StatusCode >= 500 {
		fault = smithy.FaultServer
	}
	if body.RequestID == "" {
		body.RequestID = resp.Header.Get("X-Amz-Request-Id")
	}
	return &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp},
			Err: &smithy.GenericAPIError{Code: body.Code, Message: body.Message, Fault: fault}},
		RequestID: body.RequestID,
	}
}
