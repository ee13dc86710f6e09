// Command aef is a minimal API exposing function: one HTTPS API, monitoring-event, behind the
// aefauth middleware, so that only invokers holding a CCF token for it, on the connection of the
// certificate the token was issued to, get through; and the AEF_Security_API's
// revoke-authorization, where the CCF pushes revocations, after which the revoked tokens are
// refused. See README.md for a walk through it.
//
//	go run ./examples/aef -ccf https://127.0.0.1:8443 -data .capif-local
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
)

type config struct {
	addr    string // listen address
	dataDir string // the runner's data directory: dev CA, and the AEF's client certificate
	ccf     string // the CCF's base URL; the JWKS is at ccf/.well-known/jwks.json
	issuer  string // the tokens' iss
	aefID   string
	api     string
	apiID   string // the API's apiId in the registry, which revocations name
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:9443", "HTTPS listen address")
	flag.StringVar(&c.dataDir, "data", ".capif-local", "the runner's data directory (dev CA; clients/AEF.pem and clients/AEF-key.pem)")
	flag.StringVar(&c.ccf, "ccf", "https://127.0.0.1:8443", "the CCF's base URL (JWKS at /.well-known/jwks.json)")
	flag.StringVar(&c.issuer, "iss", "", "the issuer of the CCF's tokens (default: -ccf)")
	flag.StringVar(&c.aefID, "aef-id", "aef-1", "this AEF's aefId")
	flag.StringVar(&c.api, "api", "monitoring-event", "the apiName served at /API/")
	flag.StringVar(&c.apiID, "api-id", "api-monitoring-event", "the API's apiId in the registry (revocations name it)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, c, func(addr string) { fmt.Printf("aef %s serving %s on https://%s/%s/\n", c.aefID, c.api, addr, c.api) })
	if err != nil {
		log.Fatal("aef: ", err)
	}
}

// run serves until ctx ends; ready gets the listening address.
func run(ctx context.Context, c config, ready func(addr string)) error {
	ca, aefCert, err := loadPKI(c)
	if err != nil {
		return err
	}
	if c.issuer == "" {
		c.issuer = strings.TrimSuffix(c.ccf, "/")
	}

	// The three lines: a verifier for this AEF, the API behind it, the claims inside (in serve).
	// Revocations the CCF pushes are kept in a file beside the runner's data: they survive a
	// restart of this AEF.
	deny, err := aefauth.OpenFileList(filepath.Join(c.dataDir, c.aefID+"-deny-list.jsonl"))
	if err != nil {
		return err
	}
	defer deny.Close()
	v, err := aefauth.New(aefauth.Config{JWKSURL: strings.TrimSuffix(c.ccf, "/") + "/.well-known/jwks.json", Client: aefauth.MTLSClient(aefCert, ca.Pool()), Issuer: c.issuer, AefID: c.aefID,
		DenyList: deny, APIs: map[string]string{c.api: c.apiID},
		// The runner mints the CCF's certificate from its dev CA (in production: the CCF's own
		// CA), and its key is pinned: the dev CA also issues the invokers' certificates.
		CCFRoots: ca.Pool(), CCFPins: ccfPins(c.dataDir)})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/"+c.api+"/", v.For(c.api).Handler(serve(c.api)))
	// The AEF_Security_API, where the CCF pushes revocations (this AEF's aefSecurityRoot is
	// https://ADDR): only the CCF's certificate gets in.
	mux.Handle(capif.AEFSecurityAPIPath+"/", v.SecurityAPI())

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	host, _, _ := net.SplitHostPort(addr)
	// A development shortcut: the AEF's server certificate is minted by the dev CA at start.
	server, err := ca.Server([]string{host, "localhost", "127.0.0.1", "::1"}, 24*time.Hour)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{server.TLS},
			// Verified when given, not required: a request without a certificate then gets the
			// middleware's readable 401 (a bound token needs one) instead of a TLS alert.
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  ca.Pool(),
		},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	ready(addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serve is the API itself: it answers who called and what the token grants this AEF.
func serve(api string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := aefauth.ClaimsFrom(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"api": api, "path": r.URL.Path, "apiInvokerId": claims.Subject, "granted": claims.APIs,
		})
	})
}

// loadPKI reads the dev CA (certificate and key: it also mints the server certificate) and the
// AEF's client certificate, which `capif-local cert -id AEF` writes.
func loadPKI(c config) (*devpki.CA, tls.Certificate, error) {
	certPEM, err1 := os.ReadFile(filepath.Join(c.dataDir, devpki.CAFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(c.dataDir, devpki.CAKeyFile))
	if err := errors.Join(err1, err2); err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("dev CA (start the runner once: make run): %w", err)
	}
	ca, err := devpki.ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	clients := filepath.Join(c.dataDir, "clients")
	aefCert, err := tls.LoadX509KeyPair(filepath.Join(clients, c.aefID+".pem"), filepath.Join(clients, c.aefID+"-key.pem"))
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("the AEF's client certificate (go run ./cmd/capif-local cert -id %s): %w", c.aefID, err)
	}
	return ca, aefCert, nil
}

// ccfPins pins the key of the runner's CCF certificate (DATA/ccf.pem), if the runner made one.
func ccfPins(dataDir string) []string {
	b, err := os.ReadFile(filepath.Join(dataDir, devpki.CCFFile))
	if err != nil {
		return nil
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return []string{aefauth.SPKIPin(cert)}
}
