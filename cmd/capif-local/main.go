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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "capif-local:", err)
		os.Exit(1)
	}
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "cert" {
		return certCommand(args[1:], stdout, stderr)
	}
	cfg, err := parseConfig(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	return run(ctx, cfg, logger, func(url string) { fmt.Fprintf(stdout, "capif-local listening on %s\n", url) })
}

// config is the runner's configuration: every flag also reads an environment variable.
type config struct {
	addr, dataDir, registry   string
	tlsCert, tlsKey, clientCA string
	apiRoot, ccfID            string
	tokenTTL                  time.Duration
	allowLoopback             bool
	store, signer, kmsKeyID   string
	tablePrefix               string
	createTables              bool
	logLevel                  slog.Level
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("capif-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string { return app.EnvOr(getenv, name, def) }
	fs.StringVar(&c.addr, "addr", env("CAPIF_ADDR", "127.0.0.1:8443"), "HTTPS listen address [CAPIF_ADDR]")
	fs.StringVar(&c.dataDir, "data", env("CAPIF_DATA", ".capif-local"), "data directory: embedded store, dev CA, signing key [CAPIF_DATA]")
	fs.StringVar(&c.registry, "registry", env("CAPIF_REGISTRY", ""), "registry JSON to import (upsert) at start [CAPIF_REGISTRY]")
	fs.StringVar(&c.tlsCert, "tls-cert", env("CAPIF_TLS_CERT", ""), "server certificate PEM (default: issued by the dev CA) [CAPIF_TLS_CERT]")
	fs.StringVar(&c.tlsKey, "tls-key", env("CAPIF_TLS_KEY", ""), "server key PEM [CAPIF_TLS_KEY]")
	fs.StringVar(&c.clientCA, "client-ca", env("CAPIF_CLIENT_CA", ""), "PEM bundle trusted for client certificates (default: the dev CA) [CAPIF_CLIENT_CA]")
	fs.StringVar(&c.apiRoot, "api-root", env("CAPIF_API_ROOT", ""), "public {apiRoot} for Location headers (default https://ADDR) [CAPIF_API_ROOT]")
	fs.StringVar(&c.ccfID, "ccf-id", env("CAPIF_CCF_ID", "capif-local"), "CCF id: the iss claim of tokens [CAPIF_CCF_ID]")
	ttl := fs.String("token-ttl", env("CAPIF_TOKEN_TTL", "600s"), "access token lifetime [CAPIF_TOKEN_TTL]")
	var err error
	boolFlag := func(p *bool, name, envName string, def bool, usage string) {
		v := env(envName, strconv.FormatBool(def))
		if *p, err = parseBool(envName, v); err != nil {
			return
		}
		fs.BoolVar(p, name, *p, usage+" ["+envName+"]")
	}
	boolFlag(&c.allowLoopback, "allow-loopback-notifications", "CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS", true, "let notifications reach 127.0.0.1/::1")
	if err != nil {
		return c, err
	}
	fs.StringVar(&c.store, "store", env("CAPIF_STORE", app.StoreEmbedded), "back end: embedded | dynamodb [CAPIF_STORE]")
	fs.StringVar(&c.signer, "signer", env("CAPIF_SIGNER", app.SignerLocal), "token signer: local | kms [CAPIF_SIGNER]")
	fs.StringVar(&c.kmsKeyID, "kms-key-id", env("CAPIF_KMS_KEY_ID", ""), "KMS key ids, active first, comma-separated [CAPIF_KMS_KEY_ID]")
	fs.StringVar(&c.tablePrefix, "table-prefix", env("CAPIF_TABLE_PREFIX", "capif-"), "DynamoDB table name prefix [CAPIF_TABLE_PREFIX]")
	boolFlag(&c.createTables, "create-tables", "CAPIF_CREATE_TABLES", false, "create missing DynamoDB tables")
	if err != nil {
		return c, err
	}
	level := fs.String("log-level", env("CAPIF_LOG_LEVEL", "info"), "debug | info | warn | error [CAPIF_LOG_LEVEL]")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.tokenTTL, err = time.ParseDuration(*ttl); err != nil || c.tokenTTL <= 0 {
		return c, fmt.Errorf("-token-ttl %q is not a positive duration", *ttl)
	}
	if err := c.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return c, fmt.Errorf("-log-level: %w", err)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("-tls-cert and -tls-key go together")
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return c, fmt.Errorf("-addr %q: %w", c.addr, err)
	}
	return c, nil
}

func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("%s %q is not a boolean", name, v)
}

// run serves until ctx ends, then shuts down gracefully: in-flight requests finish, the store is
// closed cleanly. ready is called with the listen URL once connections are accepted.
func run(ctx context.Context, c config, logger *slog.Logger, ready func(url string)) error {
	ca, err := devpki.LoadOrCreateCA(c.dataDir)
	if err != nil {
		return fmt.Errorf("dev CA: %w", err)
	}
	clientCAPEM := ca.PEM
	if c.clientCA != "" {
		if clientCAPEM, err = os.ReadFile(c.clientCA); err != nil {
			return err
		}
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(clientCAPEM) {
		return errors.New("the client CA bundle holds no certificate")
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().String() // the real port when -addr asked for :0
	serverCert, err := loadServerCert(c, ca, addr)
	if err != nil {
		return err
	}
	apiRoot := strings.TrimSuffix(c.apiRoot, "/")
	if apiRoot == "" {
		apiRoot = "https://" + addr
	}
	a, err := app.Open(ctx, app.Config{
		Store: c.store, Signer: c.signer, DataDir: c.dataDir,
		KMSKeyIDs: kms.ParseKeyList(c.kmsKeyID), TablePrefix: c.tablePrefix, CreateTables: c.createTables,
		CCFID: c.ccfID, TokenTTL: c.tokenTTL, APIRoot: apiRoot, ClientCAPEM: string(clientCAPEM),
		AllowLoopbackNotifications: c.allowLoopback, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	if c.registry != "" {
		if err := importRegistry(ctx, a.Service, c.registry); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler: httpapi.All(a.Service, httpapi.Options{APIRoot: apiRoot, Logger: logger}),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{serverCert},
			// Requested, not required: the JWKS is public and a missing certificate must get the
			// API's own 401 answer, not a TLS alert.
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  clientCAs,
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	ready("https://" + addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

func loadServerCert(c config, ca *devpki.CA, addr string) (tls.Certificate, error) {
	if c.tlsCert != "" {
		return tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
	}
	host, _, _ := net.SplitHostPort(addr)
	issued, err := ca.Server([]string{host, "localhost", "127.0.0.1", "::1"}, 90*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return issued.TLS, nil
}

func importRegistry(ctx context.Context, svc *security.Service, path string) error {
	doc, err := app.ReadRegistry(path)
	if err != nil {
		return err
	}
	if err := svc.ImportRegistry(ctx, doc); err != nil {
		return fmt.Errorf("registry %s: %w", path, err)
	}
	return nil
}

// certCommand mints a development client certificate for a registry id, signed by the dev CA of
// the data directory, so curl can call the runner as that invoker or AEF.
func certCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capif-local cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", app.EnvOr(os.Getenv, "CAPIF_DATA", ".capif-local"), "data directory holding the dev CA [CAPIF_DATA]")
	id := fs.String("id", "", "the registry id (apiInvokerId or aefId) to put in the Subject CN")
	out := fs.String("out", "", "output directory (default DATA/clients)")
	validity := fs.Duration("valid-for", 90*24*time.Hour, "validity period")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("cert: -id is required")
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
	if err := os.WriteFile(keyPath, issued.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(certPath, issued.CertPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certificate %s\nkey         %s\nCA          %s\n", certPath, keyPath, filepath.Join(*dataDir, devpki.CAFile))
	return nil
}
