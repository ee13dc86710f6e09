// Command capif-local serves the whole CAPIF_Security_API over HTTPS with client-certificate
// authentication, on an embedded store and a local signing key by default, so it runs on any
// machine with one command (`make run`). See README.md for a walkthrough.
//
//	capif-local [flags]               serve
//	capif-local cert -id ID [flags]   mint a development client certificate for a registry id
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/registrydoc"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer"
	"github.com/capifcore/capif-security/shared/signer/envelope"
	"github.com/capifcore/capif-security/shared/signer/local"
)

func main() {
	// The first Ctrl-C (or SIGTERM) stops gracefully, saying what it waits for; a second one
	// stops at once, whatever is still in flight (the store is crash-safe).
	ctx, stop := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		stop()
		<-signals
		fmt.Fprintln(os.Stderr, "capif-local: stopped at once; in-flight requests were cut off")
		os.Exit(1)
	}()
	if err := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "capif-local:", err)
		os.Exit(1)
	}
}

// shutdownGrace is how long a graceful stop waits for in-flight requests.
const shutdownGrace = 20 * time.Second

// mainErr is the command: serve, or the cert subcommand. -h is flag.ErrHelp (exit 0).
func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "cert" {
		return certCommand(args[1:], settings.Getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, settings.Getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr, localDynamoDB(settings.Getenv))
	cfg.LogWarnings(logger)
	return run(ctx, cfg, logger, func(url string) {
		fmt.Fprintf(stdout, "capif-local listening on %s\n", url)
		fmt.Fprintln(stdout, "stop it with Ctrl-C (or SIGTERM): in-flight requests finish, the store closes; a second Ctrl-C stops at once")
	})
}

const usage = `usage:
  capif-local [flags]                serve the CAPIF_Security_API over HTTPS (make run)
  capif-local cert -id ID [flags]    mint a development client certificate for a registry id
                                     (capif-local cert -h for its flags)
Stop the server with Ctrl-C or SIGTERM: in-flight requests finish, the store closes cleanly.

flags (each also read from the environment variable in brackets):`

// config is the runner's configuration: the settings of settings.Runner.
type config = settings.Config

// newLogger is the runner's logger: text lines for a terminal, or JSON lines (-log-format json).
// On DynamoDB Local (localDDB) it drops the SDK's missing-checksum noise (sdklog.go).
func newLogger(cfg config, w io.Writer, localDDB bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == settings.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	if cfg.Store == settings.StoreDynamoDB && localDDB {
		h = quietLocalChecksum{h}
	}
	return slog.New(h)
}

// parseConfig reads the runner's settings: flags over the environment over the defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c, rest, err := settings.Load(settings.Runner, args, getenv, settings.Options{Name: "capif-local", Output: stderr, Usage: usage})
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected arguments: %s", strings.Join(rest, " "))
	}
	return c, err
}

// run serves until ctx ends, then shuts down gracefully: in-flight requests finish, the store is
// closed cleanly. ready is called with the listen URL once connections are accepted.
func run(ctx context.Context, c config, logger *slog.Logger, ready func(url string)) error {
	ca, err := devpki.LoadOrCreateCA(c.DataDir)
	if err != nil {
		return fmt.Errorf("dev CA: %w", err)
	}
	clientCAPEM := ca.PEM
	if c.ClientCA != "" {
		if clientCAPEM, err = os.ReadFile(c.ClientCA); err != nil {
			return err
		}
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(clientCAPEM) {
		return errors.New("the client CA bundle holds no certificate")
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().String() // the real port when -addr asked for :0
	serverCert, err := loadServerCert(c, ca, addr)
	if err != nil {
		return err
	}
	if c.APIRoot == "" { // no -api-root: the two settings settings.Load leaves to the runner
		c.APIRoot = "https://" + addr
		if c.Issuer == "" {
			c.Issuer = c.APIRoot
		}
	}
	clientCA := string(clientCAPEM) // once: every PKI entry answered carries it
	cfg := app.Config{Settings: c, Logger: logger, ClientCA: func(context.Context) (string, error) { return clientCA, nil }}
	if err := fullapp.WithCCF(&cfg); err != nil {
		return err
	}
	a, err := fullapp.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	if c.Signer == settings.SignerLocal || c.Signer == settings.SignerKMSEnvelope {
		if err := startKeySet(ctx, c, cfg, a, logger); err != nil {
			return fmt.Errorf("key set: %w", err)
		}
	}
	if c.Registry != "" {
		if err := importRegistry(ctx, a.Service, c.Registry, logger); err != nil {
			return err
		}
	}
	// Client certificates are requested, not required, and verified once per connection outside
	// the handshake's verdict: no certificate, or one that does not verify, gets the API's own
	// 401 naming the reason (the JWKS is public), not a TLS alert.
	certs := httpapi.NewClientCertificates(clientCAs, nil)
	srv := &http.Server{
		Handler: httpapi.All(a.Service, httpapi.Options{APIRoot: c.APIRoot, Logger: logger, MetricsNamespace: metricsNamespace(c),
			Certificates: certs.Source}),
		TLSConfig: &tls.Config{
			MinVersion:       tls.VersionTLS12,
			Certificates:     []tls.Certificate{serverCert},
			ClientAuth:       tls.RequestClientCert,
			ClientCAs:        clientCAs, // named in the CertificateRequest, so clients pick the right certificate
			VerifyConnection: certs.VerifyConnection,
		},
		ConnState:         certs.ConnState,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	delivered := deliverEvery(ctx, a.Service, c.DeliveryInterval, logger, metricsNamespace(c))
	ready("https://" + addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("stopping", slog.String("waitingFor", "in-flight requests and a delivery run in progress"),
		slog.Duration("atMost", shutdownGrace), slog.String("toStopAtOnce", "press Ctrl-C again"))
	defer func() { <-delivered }() // a delivery run in progress finishes its attempts
	shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// startKeySet readies the key set the local and kms-envelope signers sign from: the local
// signer's PEM keys imported into a set never written (importPEMKeys), then a key of -token-alg
// signing (envelope.Manager.Bootstrap: a first key on an empty set, or after a -token-alg
// switch a key of the new algorithm that signs at once, the other kept for the overlap).
func startKeySet(ctx context.Context, c config, cfg app.Config, a *app.App, logger *slog.Logger) error {
	m, err := fullapp.KeyManager(ctx, cfg, a)
	if err != nil {
		return err
	}
	if c.Signer == settings.SignerLocal {
		if err := importPEMKeys(ctx, m, c, logger); err != nil {
			return err
		}
	}
	kid, made, err := m.Bootstrap(ctx)
	if err != nil {
		return err
	}
	if made {
		logger.Info("key set: published a signing key of -token-alg; it signs at once", slog.String("kid", kid), slog.String("alg", c.TokenAlg))
	}
	return nil
}

// importPEMKeys records the PEM keys of the local signer of builds before the key set
// (DATA/signing-key.pem, signing-key-rs256.pem) into a set never written, wrapped under the
// data directory's key file with the kids their tokens carry: the key of -token-alg signs at
// once, the other is published as the previous key, so the tokens both signed keep verifying.
// The files are left where they are: a user may go back to an older build, which reads them.
func importPEMKeys(ctx context.Context, m envelope.Manager, c config, logger *slog.Logger) error {
	set, err := m.Load(ctx)
	if err != nil || set.Version > 0 {
		return err
	}
	keys, err := local.Keys(c.DataDir, c.TokenAlg)
	if err != nil || len(keys) == 0 {
		return err
	}
	w, ok := m.Wrapper.(*envelope.KeyFile)
	if !ok {
		return errors.New("the local signer's keys are wrapped under the data directory's key file, not this wrapper")
	}
	var recs []security.SigningKey
	var kids []string
	for _, k := range keys {
		kid, err := signer.Thumbprint(k.Public())
		if err != nil {
			return err
		}
		rec, err := w.Record(kid, k)
		if err != nil {
			return err
		}
		recs, kids = append(recs, rec), append(kids, kid)
	}
	made, err := m.Import(ctx, recs)
	if made {
		logger.Info("key set: imported the PEM signing keys with their kids (the files are kept)", slog.Any("kids", kids))
	}
	return err
}

// metricsNamespace is where the access log publishes its metrics: in JSON lines only, as on
// Lambda (EMF is for CloudWatch Logs, not for a terminal).
func metricsNamespace(c config) string {
	if c.LogFormat != settings.LogJSON {
		return ""
	}
	return c.MetricsNamespace
}

// deliverEvery runs the delivery worker at start (notifications owed when the runner last
// stopped, or crashed) and then every interval, until ctx ends; the channel closes when the
// last run has returned.
func deliverEvery(ctx context.Context, svc *security.Service, interval time.Duration, logger *slog.Logger, namespace string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			rep, err := svc.DeliverDue(ctx)
			switch {
			case err != nil:
				if ctx.Err() == nil { // not the shutdown
					logger.Error("delivery run failed", slog.String("error", err.Error()))
				}
			default: // every run at DEBUG (tests count them), a run that attempted something at INFO
				level := slog.LevelDebug
				if rep.Claimed > 0 {
					level = slog.LevelInfo
				}
				attrs := []slog.Attr{slog.Int("claimed", rep.Claimed), slog.Int("delivered", rep.Delivered),
					slog.Int("retried", rep.Retried), slog.Int("deadLettered", rep.DeadLettered)}
				var ms []metrics.Metric
				if b, err := svc.Backlog(ctx); err == nil { // the same gauges as the worker's line on Lambda
					ms = app.BacklogMetrics(b, nil)
					attrs = append(attrs, slog.Int("pendingInvoker", b.PendingInvoker), slog.Int("pendingAEF", b.PendingAEF),
						slog.Int("deadLetters", b.DeadLetters))
				}
				metrics.Emitter{Logger: logger, Namespace: namespace}.Emit(ctx, level, "delivery run", attrs, ms...)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return done
}

func loadServerCert(c config, ca *devpki.CA, addr string) (tls.Certificate, error) {
	if c.TLSCert != "" {
		return tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	}
	host, _, _ := net.SplitHostPort(addr)
	issued, err := ca.Server([]string{host, "localhost", "127.0.0.1", "::1"}, 90*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return issued.TLS, nil
}

// importRegistry upserts the -registry file and logs what it held, so the start-up log says
// which registry the runner serves.
func importRegistry(ctx context.Context, svc *security.Service, path string, logger *slog.Logger) error {
	start := time.Now()
	doc, err := registrydoc.Read(path)
	if err != nil {
		return err
	}
	if err := svc.ImportRegistry(ctx, doc); err != nil {
		return fmt.Errorf("registry %s: %w", path, err)
	}
	logger.Info("registry imported", slog.String("file", path), slog.Int("apiInvokers", len(doc.APIInvokers)),
		slog.Int("aefs", len(doc.AEFs)), slog.Int("serviceApis", len(doc.ServiceAPIs)), slog.Duration("took", time.Since(start)))
	return nil
}

// certCommand mints a development client certificate for a registry id, signed by the dev CA of
// the data directory, so curl can call the runner as that invoker or AEF.
func certCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var id, out *string
	var validity *time.Duration
	c, rest, err := settings.Load(settings.Cert, args, getenv, settings.Options{Name: "capif-local cert", Output: stderr,
		Usage: "usage: capif-local cert -id ID [flags]\n\nMints a client certificate whose Subject CN is ID, signed by the development CA of the data directory.\n\nflags:",
		Flags: func(fs *flag.FlagSet) {
			id = fs.String("id", "", "the registry id (apiInvokerId or aefId) to put in the Subject CN")
			out = fs.String("out", "", "output directory (default DATA/clients)")
			validity = fs.Duration("valid-for", 90*24*time.Hour, "validity period")
		}})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("cert: unexpected arguments: %s", strings.Join(rest, " "))
	}
	dataDir := &c.DataDir
	if *id == "" {
		return errors.New("cert: -id is required")
	}
	if *id == security.DefaultCCFName || *id == c.CCFName {
		return fmt.Errorf("cert: %q is the CCF's own name (-ccf-name), which no invoker or AEF may take: the runner keeps the CCF's certificate in %s",
			*id, filepath.Join(*dataDir, devpki.CCFFile))
	}
	if *out == "" {
		*out = filepath.Join(*dataDir, "clients")
	}
	ca, err := devpki.LoadOrCreateCA(*dataDir)
	if err != nil {
		return err
	}
	issued, err := ca.Client(*id, *validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	name := strings.NewReplacer("/", "_", " ", "_", "%", "_").Replace(*id)
	certPath, keyPath := filepath.Join(*out, name+".pem"), filepath.Join(*out, name+"-key.pem")
	// Atomic writes: a concurrent cert for the same id leaves one complete pair's files.
	if err := devpki.WriteFile(keyPath, issued.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := devpki.WriteFile(certPath, issued.CertPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certificate %s\nkey         %s\nCA          %s\n", certPath, keyPath, filepath.Join(*dataDir, devpki.CAFile))
	return nil
}
