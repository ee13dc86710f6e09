// Package devpki makes the development PKI of the local runner: a CA, the server certificate and
// client certificates whose Subject CN is a registry id (apiInvokerId or aefId). It is for local
// use and tests only; production identities come from the operator's CA behind API Gateway mTLS.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority with its key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// File names inside a data directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// LoadOrCreateCA reads DIR/ca.pem and DIR/ca-key.pem, creating them (key 0600) when absent, so a
// restart keeps every issued certificate valid.
//
// It is safe for concurrent use by any number of processes on one directory (a runner starting
// while `capif-local cert` runs): the CA is created under an exclusive lock on DIR/ca.lock, the
// key is written to a temporary file and renamed into place, then the certificate is linked into
// place (an exclusive create), so a reader sees either no CA or a complete one, and every caller
// gets the same CA.
func LoadOrCreateCA(dir string) (*CA, error) {
	if ca, err := loadCA(dir); ca != nil || err != nil {
		return ca, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("devpki: locking %s: %w", dir, err)
	}
	defer unlock()
	// Another process may have created it while this one waited for the lock.
	if ca, err := loadCA(dir); ca != nil || err != nil {
		return ca, err
	}
	ca, err := NewCA("CAPIF local development CA")
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	// The key first: a certificate on disk always has its key beside it. A key without a
	// certificate (a crash in between) signed nothing and is replaced here.
	if err := WriteFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := createFile(filepath.Join(dir, CAFile), ca.PEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// lockName is the lock file of CA creation inside a data directory.
const lockName = "ca.lock"

// loadCA returns the CA of dir, or nil and no error when dir has no certificate yet.
func loadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("devpki: %s has no key beside it (%s is missing): remove %s to start a new development CA", certPath, CAKeyFile, certPath)
	}
	if err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("devpki: the development CA in %s is unusable (remove %s and %s to start a new one): %w", dir, CAFile, CAKeyFile, err)
	}
	return ca, nil
}

// WriteFile writes data to path atomically: a temporary file in the same directory, synced,
// then renamed over path, so a reader never sees a partial file.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("devpki: %w", err)
	}
	return nil
}

// createFile is WriteFile that refuses an existing path (a hard link is an exclusive create of
// complete content).
func createFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	return nil
}

func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("devpki: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("devpki: writing %s: %w", path, err)
	}
	return f.Name(), nil
}

// ParseCA reads a CA from PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("devpki: CA certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("devpki: the CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM}, nil
}

// NewCA makes a fresh in-memory CA valid for ten years.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"CAPIF local"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Pool is a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issued is a leaf certificate and key, in PEM and ready for crypto/tls.
type Issued struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
}

// Client issues a client-authentication certificate whose Subject CN is id.
func (ca *CA) Client(id string, validFor time.Duration) (*Issued, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{"CAPIF local"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validFor)
}

// Server issues a server certificate for the given host names and IP addresses.
func (ca *CA) Server(hosts []string, validFor time.Duration) (*Issued, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "capif-local", Organization: []string{"CAPIF local"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, validFor)
}

func (ca *CA) issue(tmpl *x509.Certificate, validFor time.Duration) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return ca.issueFor(tmpl, key, time.Now(), validFor)
}

// issueFor issues tmpl for key, valid from an hour before now (clock skew) for validFor.
func (ca *CA) issueFor(tmpl *x509.Certificate, key *ecdsa.PrivateKey, now time.Time, validFor time.Duration) (*Issued, error) {
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validFor)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("devpki: issuing %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := &Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	out.TLS, err = tls.X509KeyPair(out.CertPEM, out.KeyPEM)
	return out, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
