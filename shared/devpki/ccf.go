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
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Files of the CCF's own client certificate in a data directory: beside the CA, outside
// clients/, where `capif-local cert` writes the invokers' and AEFs'.
const (
	CCFFile    = "ccf.pem"
	CCFKeyFile = "ccf-key.pem"
)

// CCF validity and renewal: a certificate is renewed, with the same key, once it has less than
// CCFRenewBefore left.
const (
	CCFValidity    = 365 * 24 * time.Hour
	CCFRenewBefore = 30 * 24 * time.Hour
)

// CCF is the runner's client certificate towards AEFs (CAPIF-3e): Subject CN Name, extended
// key usage clientAuth, issued by CA and kept in Dir. Certificate mints it on first use, renews
// it with the same key CCFRenewBefore before it expires, and re-issues it when it no longer
// matches (another name, another CA). Safe for concurrent use, and for several processes on one
// directory (a runner and capif-admin): changes are made under a lock file, written atomically.
type CCF struct {
	Dir  string
	Name string
	CA   *CA
	Now  func() time.Time // default time.Now

	mu   sync.Mutex
	cert *tls.Certificate
}

// Certificate returns the current certificate, minting or renewing it as needed (it fits
// tls.Config.GetClientCertificate).
func (c *CCF) Certificate() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if c.cert != nil && c.current(c.cert.Leaf, now()) {
		return c.cert, nil
	}
	unlock, err := lockFile(filepath.Join(c.Dir, "ccf.lock"))
	if err != nil {
		return nil, fmt.Errorf("devpki: locking the CCF certificate: %w", err)
	}
	defer unlock()
	key, leaf, err := c.load()
	if err != nil {
		return nil, err
	}
	if key == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := WriteFile(filepath.Join(c.Dir, CCFKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	}
	if leaf == nil || !c.current(leaf, now()) || !key.PublicKey.Equal(leaf.PublicKey) {
		issued, err := c.CA.issueFor(&x509.Certificate{
			Subject:     pkix.Name{CommonName: c.Name, Organization: []string{"CAPIF local"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, key, now(), CCFValidity)
		if err != nil {
			return nil, err
		}
		if err := WriteFile(filepath.Join(c.Dir, CCFFile), issued.CertPEM, 0o644); err != nil {
			return nil, err
		}
		if leaf, err = x509.ParseCertificate(issued.TLS.Certificate[0]); err != nil {
			return nil, err
		}
	}
	c.cert = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	return c.cert, nil
}

// current reports whether leaf is this CCF's, from this CA, and not yet due for renewal.
func (c *CCF) current(leaf *x509.Certificate, now time.Time) bool {
	return leaf.Subject.CommonName == c.Name && leaf.CheckSignatureFrom(c.CA.Cert) == nil && now.Before(leaf.NotAfter.Add(-CCFRenewBefore))
}

// load reads the key and certificate of Dir; nil for a file that does not exist yet.
func (c *CCF) load() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	read := func(name, typ string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(c.Dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("devpki: %w", err)
		}
		block, _ := pem.Decode(b)
		if block == nil || block.Type != typ {
			return nil, fmt.Errorf("devpki: %s is not a PEM %s (remove it to mint a new CCF certificate)", filepath.Join(c.Dir, name), typ)
		}
		return block.Bytes, nil
	}
	keyDER, err := read(CCFKeyFile, "EC PRIVATE KEY")
	if err != nil || keyDER == nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: %s: %w", CCFKeyFile, err)
	}
	certDER, err := read(CCFFile, "CERTIFICATE")
	if err != nil || certDER == nil {
		return key, nil, err
	}
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: %s: %w", CCFFile, err)
	}
	return key, leaf, nil
}
