// Package notify delivers SecurityNotification and TestNotification bodies to an invoker's
// notificationDestination, and RevokeAuthorizationReq bodies to an AEF's revoke-authorization
// (security.Notifier). Destinations are chosen by invokers and by the registry, so every
// connection is checked at dial time against the addresses this service must never reach
// (loopback, where the Lambda runtime API listens; link-local, where metadata endpoints live;
// private and other special-purpose ranges), redirects are not followed, environment proxies are
// ignored and each delivery is bounded in time.
//
// To an AEF, and only to an AEF, the CCF presents its client certificate (CAPIF-3e, TS 33.122),
// and the AEF's certificate chain and host name are verified against CCFIdentity.AEFRoots. An
// invoker's destination never sees the CCF's certificate: the two kinds use separate clients.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// DefaultTimeout bounds a whole delivery when Options.Timeout is not set.
const DefaultTimeout = 2 * time.Second

const (
	// maxDrain caps how much of a response body is read; the content is never used.
	maxDrain = 64 << 10
	// maxHeaderBytes caps the response header, which the destination controls.
	maxHeaderBytes = 16 << 10
	userAgent      = "capif-security-notify"
)

// Options configures a Notifier.
type Options struct {
	// AllowLoopback admits 127.0.0.0/8 and ::1 destinations (and "localhost"), so a developer
	// can receive notifications on a local listener. Only the local runner sets it; in Lambda
	// the runtime API listens on loopback, so it must stay off there. Private ranges remain
	// refused either way.
	AllowLoopback bool
	// Timeout bounds a whole delivery: DNS, connect, TLS, request, response. Default 2 s.
	Timeout time.Duration
	// Logger receives redirect warnings and delivery debug records; default slog.Default().
	Logger *slog.Logger
	// CCF returns the CCF's identity towards AEFs, asked on the first push (a Lambda function
	// reads its certificate then, not at start) and again after a failure. nil: this process
	// has none, and pushes to AEFs fail (and are retried).
	CCF func(context.Context) (CCFIdentity, error)
}

// CCFIdentity is what a push to an AEF needs.
type CCFIdentity struct {
	// Certificate is presented to AEFs, asked at each handshake (so a renewed one is picked
	// up); its key may be a crypto.Signer backed by KMS.
	Certificate func() (*tls.Certificate, error)
	// AEFRoots verify the AEFs' server certificates (CAPIF_AEF_CA); nil: the system roots.
	AEFRoots *x509.CertPool
}

// Notifier POSTs JSON bodies to notification destinations. Safe for concurrent use.
type Notifier struct {
	client        *http.Client // to invokers: no client certificate
	timeout       time.Duration
	log           *slog.Logger
	allowLoopback bool

	ccf       func(context.Context) (CCFIdentity, error)
	transport func(*tls.Config) *http.Client
	mu        sync.Mutex
	aefClient *http.Client // to AEFs: the CCF's certificate, AEFRoots; built on the first push
}

// New builds a Notifier.
func New(o Options) *Notifier {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	dialer := &net.Dialer{
		Timeout:        timeout,
		ControlContext: guard(o.AllowLoopback),
	}
	transport := func(tlsConfig *tls.Config) *http.Transport {
		return &http.Transport{
			// nil, not ProxyFromEnvironment: a proxy would make the connection for us, out of
			// the guard's sight.
			Proxy:       nil,
			DialContext: dialer.DialContext,
			// TLS runs over DialContext, so https destinations pass the same guard.
			TLSClientConfig:        tlsConfig,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: maxHeaderBytes,
			// The body is discarded (or small), so never ask for gzip.
			DisableCompression: true,
			// Notifications are rare and go to many hosts; a pooled connection would outlive a
			// Lambda freeze and fail the next POST, which the transport does not retry.
			DisableKeepAlives: true,
		}
	}
	client := func(t *http.Transport) *http.Client {
		return &http.Client{
			Transport: t,
			// A 3xx is returned to Notify as is, and becomes a failure there.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Notifier{
		client:        client(transport(&tls.Config{MinVersion: tls.VersionTLS12})),
		transport:     func(c *tls.Config) *http.Client { return client(transport(c)) },
		ccf:           o.CCF,
		timeout:       timeout,
		log:           logger,
		allowLoopback: o.AllowLoopback,
	}
}

// aef is the client of pushes to AEFs, built on first use from the CCF's identity.
func (n *Notifier) aef(ctx context.Context) (*http.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.aefClient != nil {
		return n.aefClient, nil
	}
	if n.ccf == nil {
		return nil, errNoCCFCertificate
	}
	id, err := n.ccf(ctx)
	if err != nil {
		return nil, fmt.Errorf("the CCF's certificate: %w (%w)", security.ErrNotAccepted, err)
	}
	n.aefClient = n.transport(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: id.AEFRoots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := id.Certificate()
			if err != nil {
				return nil, fmt.Errorf("the CCF's certificate: %w (%w)", security.ErrNotAccepted, err)
			}
			return c, nil
		}})
	return n.aefClient, nil
}

var errNoCCFCertificate = fmt.Errorf("this process has no CCF client certificate to present to AEFs: %w", security.ErrNotAccepted)

// CheckDestination says early, when an invoker sets its notificationDestination, what Notify
// would refuse for certain: a malformed URL or an IP literal in a refused range. Host names
// pass; they are judged at dial time, where the answer of DNS is known.
func (n *Notifier) CheckDestination(destination string) error {
	u, err := parseDestination(destination)
	if err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		return CheckAddr(ip, n.allowLoopback)
	}
	return nil
}

// StatusError is a delivery the destination answered with a status other than 2xx.
type StatusError struct {
	Code int
	aef  bool // the answer of an AEF's revoke-authorization
}

// Is classifies the answer (security.Notifier): 410 Gone (and an AEF's 404) is
// security.ErrUndeliverable: the destination says it will never accept the notification; an
// AEF's 400, 401, 403, 411, 413 and 415 are security.ErrNotAccepted: it refuses our request or
// our certificate. Every other status is retried.
func (e *StatusError) Is(target error) bool {
	switch target {
	case security.ErrUndeliverable:
		return e.Code == http.StatusGone || e.aef && e.Code == http.StatusNotFound
	case security.ErrNotAccepted:
		return e.aef && slices.Contains(notAccepted, e.Code)
	}
	return false
}

// notAccepted are the statuses by which an AEF refuses our request or our certificate.
var notAccepted = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusLengthRequired,
	http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("destination answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Code >= 300 && e.Code < 400 {
		msg += "; redirects are not followed"
	}
	return msg
}

// Headers of every delivery, after Standard Webhooks: the id is the same on every attempt of
// one notification, so receivers can discard repeats; the timestamp is the attempt's.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
)

// Notify POSTs d.Body as JSON to d.Destination, to an AEF (d.Kind security.ToAEF) over mutual
// TLS with the CCF's certificate. It returns nil on a 2xx answer; otherwise an error that never
// contains the destination's path or query (they may carry secrets): a *RefusedError or another
// error matching ErrRefused for a destination that is not allowed, a *StatusError for any other
// answer, or a transport or timeout error, classified as security.Notifier says. ctx may be
// detached from any request; the delivery applies its own timeout.
func (n *Notifier) Notify(ctx context.Context, d security.Delivery) error {
	u, err := parseDestination(d.Destination)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(d.Body)
	if err != nil {
		return fmt.Errorf("encoding the notification: %w", err)
	}
	// The timeout bounds everything, reading the CCF's identity for the first push included.
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	aef := d.Kind == security.ToAEF
	client := n.client
	if aef {
		if u.Scheme != "https" {
			return fmt.Errorf("an AEF is reached over https only: %w", ErrRefused)
		}
		if client, err = n.aef(ctx); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		// Not reached for a URL that parseDestination accepted; the message is kept free of it.
		return fmt.Errorf("building the request: %w", ErrRefused)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if d.ID != "" {
		req.Header.Set(HeaderID, d.ID)
	}
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))

	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return n.transportError(ctx, u, err, time.Since(start), aef)
	}
	// Read a bounded amount so the server is not cut off mid-answer, then close; errors here
	// do not change the outcome, which the status already decided.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		if aef {
			var rsp capif.RevokeAuthorizationRsp
			if err := json.Unmarshal(body, &rsp); err != nil || rsp.SupportedFeatures == "" {
				// The AEF took the revocation; only its answer is off.
				n.log.WarnContext(ctx, "AEF accepted the revocation with no valid RevokeAuthorizationRsp", "destination", redact(u), "status", code)
			}
		}
		n.log.DebugContext(ctx, "notification delivered", "destination", redact(u), "status", code, "duration", time.Since(start))
		return nil
	case code >= 300 && code < 400:
		// TS 29.222 lets a CCF re-send to Location on 307/308; following blindly would let a
		// destination steer us, so the redirect is reported and the delivery fails.
		n.log.WarnContext(ctx, "notification destination redirected; not followed", "destination", redact(u), "status", code, "location", redactLocation(u, resp.Header.Get("Location")))
		return &StatusError{Code: code, aef: aef}
	default:
		return &StatusError{Code: code, aef: aef}
	}
}

// transportError turns a client failure into an error without the request URL (url.Error
// carries the full URL in its message), classified: connection refused matches
// security.ErrNoListener; to an AEF, a failed TLS handshake (its certificate, or ours refused)
// matches security.ErrNotAccepted.
func (n *Notifier) transportError(ctx context.Context, u *url.URL, err error, elapsed time.Duration, aef bool) error {
	var refused *RefusedError
	if errors.As(err, &refused) {
		out := *refused
		if _, perr := netip.ParseAddr(u.Hostname()); perr != nil {
			out.Host = u.Hostname()
		}
		return &out
	}
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	if errors.Is(inner, ErrRefused) {
		return inner
	}
	// The transport's own dial/TLS/header timeouts equal the overall one and may fire first;
	// all of them are the destination being too slow. The result matches net.Error.Timeout.
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(inner, &ne) && ne.Timeout()):
		return fmt.Errorf("no answer from destination within %s: %w", n.timeout, inner)
	case ctx.Err() != nil:
		return fmt.Errorf("delivery abandoned after %s: %w", elapsed.Round(time.Millisecond), ctx.Err())
	case errors.Is(inner, syscall.ECONNREFUSED):
		return fmt.Errorf("POST to destination failed: %w (%w)", security.ErrNoListener, inner)
	case aef && tlsFailure(inner):
		return fmt.Errorf("TLS with the AEF failed: %w (%w)", security.ErrNotAccepted, inner)
	}
	return fmt.Errorf("POST to destination failed: %w", inner)
}

// tlsFailure reports whether err is a failed TLS handshake: the peer's certificate did not
// verify, the peer sent an alert (our certificate refused), or it spoke no TLS.
func tlsFailure(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		hostname x509.HostnameError
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		op       *net.OpError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &hostname) || errors.As(err, &unknown) ||
		errors.As(err, &invalid) || errors.Is(err, errNoCCFCertificate) ||
		errors.As(err, &op) && op.Op == "remote error" // an alert from the peer, e.g. "tls: certificate required"
}

// parseDestination accepts absolute http and https URLs naming a host and no user information.
// Its errors never echo the URL.
func parseDestination(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("destination is not a valid URI: %w", ErrRefused)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("destination scheme must be http or https: %w", ErrRefused)
	case u.Opaque != "" || u.Hostname() == "":
		return nil, fmt.Errorf("destination names no host: %w", ErrRefused)
	case u.User != nil:
		return nil, fmt.Errorf("destination carries user information: %w", ErrRefused)
	}
	return u, nil
}

// redact keeps scheme and host only; paths and queries may carry secrets.
// redact is security.RedactURL for a parsed destination.
func redact(u *url.URL) string { return security.RedactURL(u.String()) }

func redactLocation(base *url.URL, loc string) string {
	if loc == "" {
		return "(none)"
	}
	l, err := base.Parse(loc)
	if err != nil {
		return "(unparsable)"
	}
	return redact(l)
}
