package httpapi

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/capifcore/capif-security/shared/security"
)

// CertificateSource yields the verified client certificate of a request, or nil when the caller
// presented none. Local runner: the TLS connection's verified chain. Lambda: the PEM that API
// Gateway's mutual TLS put in the request context, re-verified with VerifyPEM. Never a header
// and never a subject-DN string.
type CertificateSource func(r *http.Request) (*x509.Certificate, error)

// TLSClientCertificate reads the client certificate the local TLS server verified against its
// client CA pool (ClientAuth VerifyClientCertIfGiven), so an unverified one never gets here.
func TLSClientCertificate(r *http.Request) (*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil, nil
	}
	return r.TLS.VerifiedChains[0][0], nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// CallerID is the one identity rule of the service: the certificate's Subject must carry exactly
// one CN, which is the caller's registry id (an apiInvokerId or an aefId; the registry says
// which). Whether that id is known is decided with the registry by the domain.
func CallerID(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate was presented")
	}
	var cns []string
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			s, _ := atv.Value.(string)
			cns = append(cns, s)
		}
	}
	switch {
	case len(cns) != 1:
		return "", fmt.Errorf("the client certificate's subject has %d common names; exactly one is required", len(cns))
	case cns[0] == "" || len(cns[0]) > security.MaxIDLength || !utf8.ValidString(cns[0]):
		return "", errors.New("the client certificate's common name is not a usable id")
	}
	return cns[0], nil
}

// VerifyPEM parses a PEM client certificate and verifies it for client authentication against
// roots (and intermediates, if any) at time now. API Gateway already did this; verifying again
// keeps the rule in our code and catches a misconfigured truststore.
func VerifyPEM(pemBytes []byte, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	if roots == nil {
		// x509 would fall back to the system roots: any public CA's client certificate would do.
		return nil, errors.New("no client CA is configured to verify the client certificate")
	}
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the client certificate is not a PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the client certificate does not parse: %w", err)
	}
	// A chain sent along with the leaf may supply intermediates, never roots.
	inter := x509.NewCertPool()
	if intermediates != nil {
		inter = intermediates.Clone()
	}
	for {
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			inter.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, fmt.Errorf("the client certificate does not verify: %w", err)
	}
	return leaf, nil
}
