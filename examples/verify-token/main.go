// Command verify-token checks an access token the way an AEF does, with package aefauth: the
// ES256 or RS256 signature against the CCF's JWKS (fetched over mutual TLS with the AEF's certificate),
// typ, iss, aud, exp/iat, the scope for one API and, given the invoker's certificate, the
// binding of the token to it. It prints the claims, or the RFC 6750 answer an AEF would give.
//
//	verify-token -bound-to .capif-local/clients/invoker-1.pem TOKEN
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
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
)

func main() {
	jwksURL := flag.String("jwks", "https://127.0.0.1:8443/.well-known/jwks.json", "the CCF's JWKS URL")
	caFile := flag.String("cacert", ".capif-local/ca.pem", "CA of the CCF's server certificate and of the invoker's certificate")
	certFile := flag.String("cert", ".capif-local/clients/aef-1.pem", "the AEF's client certificate, presented to fetch the JWKS")
	keyFile := flag.String("key", ".capif-local/clients/aef-1-key.pem", "its key")
	issuer := flag.String("iss", "https://127.0.0.1:8443", "the expected issuer (iss)")
	aefID := flag.String("aef", "aef-1", "the AEF the token must be meant for (aud, scope)")
	api := flag.String("api", "monitoring-event", "the apiName the token must grant the AEF")
	boundTo := flag.String("bound-to", "", "the certificate (PEM) of the invoker's connection to the AEF; empty: the binding is not checked")
	maxAge := flag.Duration("max-age", 0, "refuse tokens issued longer ago than this (0: exp alone)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: verify-token [flags] TOKEN")
		os.Exit(2)
	}
	claims, err := verify(options{*jwksURL, *caFile, *certFile, *keyFile, *issuer, *aefID, *api, *boundTo, *maxAge}, flag.Arg(0))
	var refused *aefauth.Error
	switch {
	case errors.As(err, &refused):
		fmt.Fprintf(os.Stderr, "refused: %d %s: %s\n", refused.Status, refused.Code, refused.Description)
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "verify-token:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(claims, "", "  ")
	binding := "bound to " + *boundTo
	if *boundTo == "" {
		binding = "certificate binding not checked (no -bound-to)"
	}
	fmt.Printf("valid token for %s/%s, %s\n%s\n", *aefID, *api, binding, out)
}

type options struct {
	jwksURL, caFile, certFile, keyFile, issuer, aefID, api, boundTo string
	maxAge                                                          time.Duration
}

func verify(o options, token string) (*aefauth.Claims, error) {
	caPEM, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", o.caFile)
	}
	aefCert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
	if err != nil {
		return nil, fmt.Errorf("the AEF's client certificate: %w", err)
	}
	v, err := aefauth.New(aefauth.Config{
		JWKSURL: o.jwksURL, Client: aefauth.MTLSClient(aefCert, roots),
		Issuer: o.issuer, AefID: o.aefID, MaxTokenAge: o.maxAge,
		SkipCertificateBinding: o.boundTo == "",
	})
	if err != nil {
		return nil, err
	}
	// The request an AEF would see: the token in the header, and the connection's certificate,
	// verified as the AEF's TLS server would verify it.
	r := httptest.NewRequest(http.MethodGet, "https://aef.invalid/"+o.api+"/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	if o.boundTo != "" {
		if r.TLS, err = connection(o.boundTo, roots); err != nil {
			return nil, err
		}
	}
	return v.For(o.api).Verify(context.Background(), r)
}

// connection is the TLS state of a connection whose client presented the certificate in file.
func connection(file string, roots *x509.CertPool) (*tls.ConnectionState, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: chains}, nil
}
