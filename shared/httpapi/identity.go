package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// CertificateSource yields the verified client certificate of a request, or nil when the caller
// presented none. Local runner: the TLS connection's verified chain. Lambda: the PEM that API
// Gateway's mutual TLS put in the request context, re-verified with VerifyPEM. Never a header
// and never a subject-DN string.
type CertificateSource func(r *http.Request) (*x509.Certificate, error)

// TLSClientCertificate reads the client certificate a TLS server verified against its client CA
// pool in the handshake (ClientAuth VerifyClientCertIfGiven), so an unverified one never gets
// here. The runner uses ClientCertificates instead, which answers a bad certificate with a 401.
func TLSClientCertificate(r *http.Request) (*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil, nil
	}
	return r.TLS.VerifiedChains[0][0], nil
}

// ClientCertificates verifies the client certificate of each TLS connection once, in the
// handshake (VerifyConnection), without failing it, and keeps the verdict for the connection's
// requests (Source). A certificate the server does not trust, or that has expired or is not
// for client authentication, then gets the API's 401 naming the reason, not a TLS alert that
// clients show as a broken connection. Wire it as tls.Config{ClientAuth: tls.RequestClientCert,
// VerifyConnection: cc.VerifyConnection}, http.Server.ConnState = cc.ConnState and
// Options.Certificates = cc.Source.
type ClientCertificates struct {
	roots    *x509.CertPool
	now      func() time.Time
	verdicts sync.Map // *x509.Certificate (the connection's leaf) → verdict
}

type verdict struct {
	cert *x509.Certificate
	err  error
}

// NewClientCertificates verifies against roots at now (time.Now when nil).
func NewClientCertificates(roots *x509.CertPool, now func() time.Time) *ClientCertificates {
	if now == nil {
		now = time.Now
	}
	return &ClientCertificates{roots: roots, now: now}
}

// VerifyConnection verifies the peer's certificate chain and keeps the verdict; it never fails
// the handshake.
func (c *ClientCertificates) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) > 0 {
		leaf, err := verifyChain(cs.PeerCertificates[0], cs.PeerCertificates[1:], c.roots, nil, c.now())
		c.verdicts.Store(cs.PeerCertificates[0], verdict{leaf, err})
	}
	return nil
}

// ConnState forgets the verdict of a connection that closed.
func (c *ClientCertificates) ConnState(conn net.Conn, state http.ConnState) {
	if state != http.StateClosed && state != http.StateHijacked {
		return
	}
	if tc, ok := conn.(*tls.Conn); ok {
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			c.verdicts.Delete(peers[0])
		}
	}
}

// Source is the CertificateSource of the connection's verdict: nil without a certificate, the
// reason it was not accepted otherwise.
func (c *ClientCertificates) Source(r *http.Request) (*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil
	}
	if v, ok := c.verdicts.Load(r.TLS.PeerCertificates[0]); ok {
		return v.(verdict).cert, v.(verdict).err
	}
	// Not seen in a handshake of this server (cannot happen when wired as documented).
	return verifyChain(r.TLS.PeerCertificates[0], r.TLS.PeerCertificates[1:], c.roots, nil, c.now())
}

// CallerID is the one identity rule of the service: the certificate's Subject must carry exactly
// one CN, which is the caller's registry id (an apiInvokerId or an aefId; the registry says
// which). Whether that id is known is decided with the registry by the domain.
func CallerID(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate was presented")
	}
	cn, ok := capif.SubjectCN(cert)
	switch {
	case !ok:
		return "", errors.New("the client certificate's subject must have exactly one common name")
	case cn == "" || len(cn) > security.MaxIDLength || !utf8.ValidString(cn):
		return "", errors.New("the client certificate's common name is not a usable id")
	}
	return cn, nil
}

// VerifyPEM parses a PEM client certificate and verifies it for client authentication against
// roots (and intermediates, if any) at time now. API Gateway already did this; verifying again
// keeps the rule in our code and catches a misconfigured truststore.
func VerifyPEM(pemBytes []byte, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the client certificate is not a PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the client certificate does not parse: %w", err)
	}
	var chain []*x509.Certificate
	for {
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			chain = append(chain, c)
		}
	}
	return verifyChain(leaf, chain, roots, intermediates, now)
}

// verifyChain verifies leaf for client authentication at now against roots, with the
// intermediates it came with (chain: they may supply intermediates, never roots) and those of
// the truststore. The one rule of both CertificateSources.
func verifyChain(leaf *x509.Certificate, chain []*x509.Certificate, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	if roots == nil {
		// x509 would fall back to the system roots: any public CA's client certificate would do.
		return nil, errors.New("no client CA is configured to verify the client certificate")
	}
	inter := x509.NewCertPool()
	if intermediates != nil {
		inter = intermediates.Clone()
	}
	for _, c := range chain {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, fmt.Errorf("the client certificate does not verify: %w", err)
	}
	return leaf, nil
}
