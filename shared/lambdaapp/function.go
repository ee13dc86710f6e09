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
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/middleware"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/dynamoapp"
	"github.com/capifcore/capif-security/shared/app/sdkconfig"
	"github.com/capifcore/capif-security/shared/httpapi"
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
	// Backends are the back ends the function links besides the DynamoDB store (kmsapp.Backend
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

// openApp opens the app of a function or the worker: the DynamoDB store and opts.Backends, on
// the process's one SDK configuration (sdkconfig.FromEnv, built on first use).
func openApp(ctx context.Context, set settings.Config, logger *slog.Logger, opts Options, aws *sdkconfig.Provider,
	clientCA func(context.Context) (string, error)) (*app.App, *ccf, error) {
	id := &ccf{set: set, aws: aws, getenv: opts.env(), logger: logger}
	for _, b := range opts.Backends {
		if b.CCF != nil {
			id.build = b.CCF
		}
	}
	if id.configured() && id.build == nil {
		return nil, nil, errors.New("lambdaapp: CAPIF_CCF_KMS_KEY is set, but this function does not push to AEFs (no kmsapp.CCF)")
	}
	cfg := app.Config{Settings: set, Logger: logger, AWS: aws.Get, ClientCA: clientCA, AEFPush: id.push(),
		Backends: append([]app.Backend{dynamoapp.Backend}, opts.Backends...)}
	if id.configured() {
		cfg.CCF = id.identity
	}
	a, err := app.Open(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("lambdaapp: %w", err)
	}
	return a, id, nil
}

// awsProvider is the process's one SDK configuration, from its environment.
func awsProvider(logger *slog.Logger, opts Options) *sdkconfig.Provider {
	getenv := opts.env()
	return sdkconfig.NewProvider(func() (aws.Config, error) { return sdkconfig.FromEnv(getenv, logger, opts.AWSAPIOptions), nil })
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
//
// Every event ends in the router's access log, with one problem+json writer: an event the proxy
// cannot convert is answered there too (400 INVALID_EVENT), and so is a panic (500).
type Function struct {
	cfg      Config
	logger   *slog.Logger
	app      *app.App
	trust    *lazyTruststore
	router   *httpapi.Router
	accessor core.RequestAccessor // aws-lambda-go-api-proxy: event → http.Request
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
	aws := awsProvider(f.logger, opts)
	var s3c s3Getter
	if cfg.Truststore.File == "" {
		awsCfg, err := aws.Get() // from the environment: no call is made
		if err != nil {
			return nil, fmt.Errorf("lambdaapp: %w", err)
		}
		s3c = newS3Reader(awsCfg, sdkconfig.Endpoint(opts.env(), "S3"))
	}
	f.trust = &lazyTruststore{loc: cfg.Truststore, s3: s3c, logger: f.logger}
	a, _, err := openApp(ctx, cfg.Settings, f.logger, opts, aws, func(ctx context.Context) (string, error) {
		ts, err := truststoreOf(ctx)
		if err != nil {
			return "", err
		}
		return ts.pem, nil
	})
	if err != nil {
		return nil, err
	}
	f.app = a
	f.router = build(a.Service, httpapi.Options{
		APIRoot:      cfg.Settings.APIRoot,
		Certificates: certificateSource(now),
		Logger:       f.logger,
		RequestID:    requestID,
		// The access log's EMF metrics: CloudWatch Logs extracts them from the function's log.
		MetricsNamespace: cfg.Settings.MetricsNamespace,
		Admit:            f.admit,
	})
	return f, nil
}

// Close releases the adapters (tests; a Lambda environment is simply frozen and discarded).
func (f *Function) Close() error { return f.app.Close() }

// Handle is the Lambda handler. It never returns an error: API Gateway would turn one into a
// bare 502. Every event is answered through the router (its access log, its one error mapping):
// one the proxy cannot convert is answered 400 INVALID_EVENT, as the request its method and path
// make (GET / when they are unusable).
func (f *Function) Handle(ctx context.Context, payload json.RawMessage) (resp events.APIGatewayProxyResponse, _ error) {
	ctx, cancel := RequestContext(ctx, f.cfg.Settings.DeadlineMargin)
	defer cancel()
	w := newAnswer()
	var ev events.APIGatewayProxyRequest
	defer func() {
		// The last resort: a panic outside the access log's own recovery (in the conversion).
		if p := recover(); p != nil {
			f.logger.ErrorContext(ctx, "panic", slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			w.Reset()
			f.router.ServeError(w, f.minimalRequest(ctx, ev), fmt.Errorf("panic: %v", p))
			resp = w.response()
		}
	}()
	r, err := f.request(ctx, payload, &ev)
	if err != nil {
		f.router.ServeError(w, f.minimalRequest(ctx, ev), httpapi.InvalidEvent(err.Error()))
	} else {
		f.router.ServeHTTP(w, r)
	}
	return w.response(), nil
}

// request converts payload (decoded into ev) with the proxy. What it cannot convert is refused
// before it tries: it would print its complaint outside the JSON log.
func (f *Function) request(ctx context.Context, payload json.RawMessage, ev *events.APIGatewayProxyRequest) (*http.Request, error) {
	if err := json.Unmarshal(payload, ev); err != nil {
		*ev = events.APIGatewayProxyRequest{}
		return nil, errors.New("the event is not an API Gateway REST proxy event")
	}
	if ev.HTTPMethod == "" {
		return nil, errors.New("the request could not be read: the event has no httpMethod")
	}
	if ev.IsBase64Encoded {
		if _, err := base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return nil, errors.New("the request could not be read: the body is marked base64 but does not decode")
		}
	}
	if !usable(ev.HTTPMethod, ev.RequestContext.DomainName, ev.Path) {
		return nil, errors.New("the request could not be read: the method, host or path is malformed")
	}
	r, err := f.accessor.EventToRequestWithContext(ctx, *ev)
	if err != nil {
		return nil, errors.New("the request could not be read")
	}
	return r, nil
}

// usable reports whether method, host and path make a request (as the proxy builds its URL).
func usable(method, host, path string) bool {
	if len(path) == 0 || path[0] != '/' {
		path = "/" + path
	}
	_, err := http.NewRequest(method, "https://"+host+path, nil)
	return err == nil
}

// minimalRequest is the request an event that cannot be served is answered as: its method and
// path when they are usable, else GET /, with its request context (the request id).
func (f *Function) minimalRequest(ctx context.Context, ev events.APIGatewayProxyRequest) *http.Request {
	min := events.APIGatewayProxyRequest{HTTPMethod: http.MethodGet, Path: "/", RequestContext: ev.RequestContext}
	min.RequestContext.DomainName = "" // the answer does not depend on the host
	if ev.HTTPMethod != "" && usable(ev.HTTPMethod, "", ev.Path) {
		min.HTTPMethod, min.Path = ev.HTTPMethod, ev.Path
	}
	r, err := f.accessor.EventToRequestWithContext(ctx, min)
	if err != nil { // cannot happen: both parts were checked
		r, _ = http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	}
	return r
}

// answer is the proxy's response writer, which holds the whole answer until the event is
// answered; Reset lets the access log replace an answer a panic broke off (httpapi.Resetter).
type answer struct{ *core.ProxyResponseWriter }

func newAnswer() *answer { return &answer{core.NewProxyResponseWriter()} }

func (a *answer) Reset() { a.ProxyResponseWriter = core.NewProxyResponseWriter() }

// response is the proxy response of the answer. The access log always writes a status, the one
// thing the conversion needs.
func (a *answer) response() events.APIGatewayProxyResponse {
	resp, _ := a.GetProxyResponse()
	return resp
}

// admit reads the truststore (once per execution environment, then kept) before a request is
// routed and hands it on in the request's context, to the CertificateSource and to the domain's
// PKI authenticationInfo.
func (f *Function) admit(r *http.Request) (*http.Request, error) {
	ts, err := f.trust.get(r.Context())
	if err != nil {
		return nil, err
	}
	return r.WithContext(context.WithValue(r.Context(), truststoreKey{}, ts)), nil
}

type truststoreKey struct{}

// truststoreOf is the truststore admit handed on.
func truststoreOf(ctx context.Context) (*Truststore, error) {
	ts, ok := ctx.Value(truststoreKey{}).(*Truststore)
	if !ok {
		return nil, errors.New("lambdaapp: the request was not admitted: no truststore")
	}
	return ts, nil
}

// gateway is what API Gateway said of the request (the proxy keeps it in the request's
// context): its request context, and the Lambda invocation's.
func gateway(r *http.Request) (events.APIGatewayProxyRequestContext, *lambdacontext.LambdaContext) {
	gw, _ := core.GetAPIGatewayContextFromContext(r.Context())
	lc, _ := core.GetRuntimeContextFromContext(r.Context())
	return gw, lc
}

// certificateSource is the Lambda CertificateSource: the PEM that API Gateway's mutual TLS put
// in requestContext.identity.clientCert, re-verified against the truststore. Never a header,
// never the subject DN string.
func certificateSource(now func() time.Time) httpapi.CertificateSource {
	return func(r *http.Request) (*x509.Certificate, error) {
		gw, _ := gateway(r)
		if gw.Identity.ClientCert == nil || gw.Identity.ClientCert.ClientCertPem == "" {
			return nil, nil
		}
		ts, err := truststoreOf(r.Context())
		if err != nil {
			return nil, err
		}
		return httpapi.VerifyPEM([]byte(gw.Identity.ClientCert.ClientCertPem), ts.Roots, ts.Intermediates, now())
	}
}

// requestID is the id API Gateway gave the request (the client sees it as x-amzn-RequestId),
// else the Lambda request id, else a random one.
func requestID(r *http.Request) string {
	gw, lc := gateway(r)
	switch {
	case gw.RequestID != "":
		return gw.RequestID
	case lc != nil && lc.AwsRequestID != "":
		return lc.AwsRequestID
	}
	return httpapi.RandomRequestID(r)
}

// RequestContext bounds a request by the Lambda deadline minus margin, so the SDK's retries
// give up (and the handler answers 503) while the function still has time to answer.
func RequestContext(ctx context.Context, margin time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-margin))
	}
	return context.WithCancel(ctx)
}

// Main runs a function: start, New, and the Lambda runtime loop. A configuration error fails
// the init (API Gateway answers its own 5xx, shaped as problem+json by the template's
// DEFAULT_5XX gateway response). backends are what the function links besides the DynamoDB
// store: kmsapp.Backend for the one that signs tokens.
func Main(build Build, backends ...app.Backend) {
	set, logger := start(settings.Function, "function")
	f, err := New(context.Background(), configOf(set), build, Options{Logger: logger, Backends: backends})
	if err != nil {
		exit(logger, "init", err)
	}
	lambda.Start(f.Handle)
}

// start is what every function's and the worker's main begin with: the JSON logger (with the
// X-Ray trace id) as the process's default, so the proxy's and the SDK's lines are JSON too, and
// cmd's settings from the environment, their warnings logged. A configuration error ends the
// init.
func start(cmd settings.Command, name string) (settings.Config, *slog.Logger) {
	level := new(slog.LevelVar)
	logger := slog.New(WithTraceID(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level}), settings.Getenv))
	slog.SetDefault(logger)
	set, _, err := settings.Load(cmd, nil, settings.Getenv, settings.Options{Name: name})
	if err != nil {
		exit(logger, "configuration", err)
	}
	level.Set(set.LogLevel)
	set.LogWarnings(logger)
	return set, logger
}

// exit fails the init: one ERROR line naming what failed.
func exit(logger *slog.Logger, what string, err error) {
	logger.Error(what, slog.String("error", err.Error()))
	os.Exit(1)
}
