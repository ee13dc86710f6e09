package lambdaapp

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/middleware"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/dynamoapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/logjson"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// Build makes one operation's router: httpapi.ObtainSecurityMethod, httpapi.ObtainAuthorization,
// httpapi.ObtainAPIInvokerInfo or httpapi.RevokeAuthorization.
type Build func(*security.Service, httpapi.Options) *httpapi.Router

// Options are the parts of a Function that tests replace.
type Options struct {
	Logger *slog.Logger
	// AWSAPIOptions are added to every AWS client (tests count the calls with them).
	AWSAPIOptions []func(*middleware.Stack) error
	// Now is the time client certificates are verified at (default time.Now).
	Now func() time.Time
	// Getenv is the process environment the AWS settings are read from (default
	// settings.Getenv).
	Getenv func(string) string
	// Backends are the back ends the function links besides the DynamoDB store (kmsapp.Signer
	// where it signs tokens; tests add fullapp's embedded store and local key).
	Backends []app.Backend
}

// env is opts.Getenv, else the process environment.
func (opts Options) env() func(string) string {
	if opts.Getenv != nil {
		return opts.Getenv
	}
	return settings.Getenv
}

// appConfig is the app configuration of a function or the worker: the DynamoDB store and
// opts.Backends, on the SDK configuration of the environment (awsConfigFromEnv).
func appConfig(set settings.Config, logger *slog.Logger, opts Options) app.Config {
	getenv := opts.env()
	return app.Config{Settings: set, Logger: logger, AWSAPIOptions: opts.AWSAPIOptions,
		Backends: append([]app.Backend{dynamoapp.Store}, opts.Backends...),
		LoadAWS: func(_ context.Context, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) (aws.Config, error) {
			return awsConfigFromEnv(getenv, logger, apiOptions), nil
		}}
}

// Function is one Lambda function: an API Gateway REST proxy event in, a proxy response out.
//
// Built once per cold start (New) with no AWS call: configuration, the adapters and the service
// (app.Open makes no network call), the operation's router and the proxy. Only the truststore
// (the bundle API Gateway's mutual TLS trusts) is read lazily, by the first request: it verifies
// callers' certificates and is the PKI authenticationInfo the service answers. A failed read is
// answered 503 (or 500 when the bundle itself is unusable) through httpapi's error mapping and
// access log, and tried again by the next request; a good one is kept for the life of the
// execution environment.
type Function struct {
	cfg     Config
	logger  *slog.Logger
	app     *app.App
	trust   *lazyTruststore
	router  http.Handler
	options httpapi.Options
	adapter *httpadapter.HandlerAdapter
}

// New builds a function without calling AWS.
func New(ctx context.Context, cfg Config, build Build, opts Options) (*Function, error) {
	if build == nil {
		return nil, errors.New("lambdaapp: no router")
	}
	f := &Function{cfg: cfg, logger: opts.Logger}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	getenv := opts.env()
	acfg := appConfig(cfg.Settings, f.logger, opts)
	var s3c s3Getter
	if cfg.Truststore.File == "" {
		// From the environment only; credentials are used on the first call. One SDK
		// configuration per process, shared with the adapters app.Open builds.
		awsCfg := awsConfigFromEnv(getenv, f.logger, opts.AWSAPIOptions)
		acfg.AWS = &awsCfg
		s3c = newS3Reader(awsCfg, s3Endpoint(getenv))
	}
	f.trust = &lazyTruststore{loc: cfg.Truststore, s3: s3c, logger: f.logger}
	acfg.ClientCA = func(ctx context.Context) (string, error) {
		ts, err := f.trust.get(ctx)
		if err != nil {
			return "", err
		}
		return ts.pem, nil
	}
	a, err := app.Open(ctx, acfg)
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %w", err)
	}
	f.app = a
	f.options = httpapi.Options{
		APIRoot:      cfg.Settings.APIRoot,
		Certificates: certificateSource(f.trust, now),
		Logger:       f.logger,
		RequestID:    requestID,
		// The access log's EMF metrics: CloudWatch Logs extracts them from the function's log.
		MetricsNamespace: cfg.Settings.MetricsNamespace,
	}
	f.router = build(a.Service, f.options)
	f.adapter = httpadapter.New(http.HandlerFunc(f.serveHTTP))
	return f, nil
}

// Close releases the adapters (tests; a Lambda environment is simply frozen and discarded).
func (f *Function) Close() error { return f.app.Close() }

// Handle is the Lambda handler. It never returns an error: API Gateway would turn one into a
// bare 502. An event that is not a convertible REST proxy event is answered 400, a panic 500,
// both as problem+json.
func (f *Function) Handle(ctx context.Context, payload json.RawMessage) (events.APIGatewayProxyResponse, error) {
	ctx, cancel := RequestContext(ctx, f.cfg.Settings.DeadlineMargin)
	defer cancel()
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		return f.reject(ctx, ev, http.StatusBadRequest, httpapi.CauseInvalidEvent, "the event is not an API Gateway REST proxy event", err), nil
	}
	if err := checkEvent(ev); err != nil {
		return f.reject(ctx, ev, http.StatusBadRequest, httpapi.CauseInvalidEvent, "the request could not be read: "+err.Error(), err), nil
	}
	served := new(bool)
	resp, err := f.proxy(context.WithValue(ctx, servedKey{}, served), ev)
	switch {
	case err == nil:
		return resp, nil
	case !*served:
		return f.reject(ctx, ev, http.StatusBadRequest, httpapi.CauseInvalidEvent, "the request could not be read", err), nil
	default:
		return f.reject(ctx, ev, http.StatusInternalServerError, httpapi.CauseInternal, "the request could not be completed", err), nil
	}
}

type servedKey struct{}

// proxy runs the event through aws-lambda-go-api-proxy; a panic becomes a 500.
func (f *Function) proxy(ctx context.Context, ev events.APIGatewayProxyRequest) (resp events.APIGatewayProxyResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			f.logger.ErrorContext(ctx, "panic", slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			resp, err = f.reject(ctx, ev, http.StatusInternalServerError, httpapi.CauseInternal, "the request could not be completed", nil), nil
		}
	}()
	return f.adapter.ProxyWithContext(ctx, ev)
}

// checkEvent refuses what the proxy cannot turn into an http.Request, before it tries (it
// would print its complaint outside the JSON log).
func checkEvent(ev events.APIGatewayProxyRequest) error {
	if ev.HTTPMethod == "" {
		return errors.New("the event has no httpMethod")
	}
	if ev.IsBase64Encoded {
		if _, err := base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return errors.New("the body is marked base64 but does not decode")
		}
	}
	path := ev.Path
	if len(path) == 0 || path[0] != '/' {
		path = "/" + path
	}
	if _, err := http.NewRequest(ev.HTTPMethod, "https://"+ev.RequestContext.DomainName+path, nil); err != nil {
		return errors.New("the method, host or path is malformed")
	}
	return nil
}

// serveHTTP is the handler behind the proxy: the truststore first (read once), then the
// operation's router.
func (f *Function) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s, ok := r.Context().Value(servedKey{}).(*bool); ok {
		*s = true
	}
	if _, err := f.trust.get(r.Context()); err != nil {
		httpapi.ServeUnwired(f.options, w, r, err)
		return
	}
	f.router.ServeHTTP(w, r)
}

// certificateSource is the Lambda CertificateSource: the PEM that API Gateway's mutual TLS put
// in requestContext.identity.clientCert (reached through the proxy's request context),
// re-verified against the truststore. Never a header, never the subject DN string.
func certificateSource(trust *lazyTruststore, now func() time.Time) httpapi.CertificateSource {
	return func(r *http.Request) (*x509.Certificate, error) {
		gw, ok := core.GetAPIGatewayContextFromContext(r.Context())
		if !ok || gw.Identity.ClientCert == nil || gw.Identity.ClientCert.ClientCertPem == "" {
			return nil, nil
		}
		ts, err := trust.get(r.Context())
		if err != nil {
			return nil, err
		}
		return httpapi.VerifyPEM([]byte(gw.Identity.ClientCert.ClientCertPem), ts.Roots, ts.Intermediates, now())
	}
}

// requestID is the id API Gateway gave the request (the client sees it as x-amzn-RequestId),
// else the Lambda request id, else a random one.
func requestID(r *http.Request) string {
	if gw, ok := core.GetAPIGatewayContextFromContext(r.Context()); ok && gw.RequestID != "" {
		return gw.RequestID
	}
	if lc, ok := core.GetRuntimeContextFromContext(r.Context()); ok && lc != nil && lc.AwsRequestID != "" {
		return lc.AwsRequestID
	}
	return httpapi.RandomRequestID(r)
}

// reject answers a request the router never saw, and logs it like the access log does.
func (f *Function) reject(ctx context.Context, ev events.APIGatewayProxyRequest, status int, cause, detail string, err error) events.APIGatewayProxyResponse {
	id := ev.RequestContext.RequestID
	if id == "" {
		id = httpapi.RandomRequestID(nil)
	}
	attrs := []slog.Attr{slog.String("requestId", id), slog.String("method", ev.HTTPMethod), slog.Int("status", status)}
	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	f.logger.LogAttrs(ctx, level, "request rejected", attrs...)
	body := problemBody(status, cause, detail)
	return events.APIGatewayProxyResponse{
		StatusCode: status,
		MultiValueHeaders: map[string][]string{
			"Content-Type":   {"application/problem+json"},
			"Content-Length": {strconv.Itoa(len(body))},
			"X-Request-Id":   {id},
		},
		Body: string(body),
	}
}

func problemBody(status int, cause, detail string) []byte {
	b, _ := json.Marshal(capif.ProblemDetails{Title: http.StatusText(status), Status: status, Detail: detail, Cause: cause})
	return b
}

// RequestContext bounds a request by the Lambda deadline minus margin, so the SDK's retries
// give up (and the handler answers 503) while the function still has time to answer.
func RequestContext(ctx context.Context, margin time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-margin))
	}
	return context.WithCancel(ctx)
}

// Main runs a function: configuration from the environment, the JSON logger, New, and the
// Lambda runtime loop. A configuration error fails the init (API Gateway answers its own 5xx,
// shaped as problem+json by the template's DEFAULT_5XX gateway response). backends are what
// the function links besides the DynamoDB store: kmsapp.Signer for the one that signs tokens.
func Main(build Build, backends ...app.Backend) {
	level := new(slog.LevelVar)
	logger := slog.New(WithTraceID(logjson.New(os.Stdout, &slog.HandlerOptions{Level: level}), settings.Getenv))
	slog.SetDefault(logger) // the proxy library's own log lines become JSON too
	cfg, err := ConfigFromEnv(settings.Getenv)
	if err != nil {
		logger.Error("configuration", slog.String("error", err.Error()))
		os.Exit(1)
	}
	level.Set(cfg.Settings.LogLevel)
	cfg.Settings.LogWarnings(logger)
	f, err := New(context.Background(), cfg, build, Options{Logger: logger, Backends: backends})
	if err != nil {
		logger.Error("init", slog.String("error", err.Error()))
		os.Exit(1)
	}
	lambda.Start(f.Handle)
}
