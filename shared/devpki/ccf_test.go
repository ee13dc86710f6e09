package devpki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestCCFCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := &CCF{Dir: dir, Name: "ccf", CA: ca, Now: func() time.Time { return now }}
	first, err := c.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf := first.Leaf
	if leaf.Subject.CommonName != "ccf" || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("CN %q, EKU %v: want ccf, clientAuth only", leaf.Subject.CommonName, leaf.ExtKeyUsage)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Fatalf("the CCF certificate does not verify against the dev CA: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CCFKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// Another process (a fresh CCF on the same directory) gets the same certificate.
	again, err := (&CCF{Dir: dir, Name: "ccf", CA: ca, Now: c.Now}).Certificate()
	if err != nil || !again.Leaf.Equal(leaf) {
		t.Fatalf("a second process got another certificate (%v)", err)
	}

	// 30 days before expiry it is renewed with the same key, once.
	now = leaf.NotAfter.Add(-CCFRenewBefore + time.Minute)
	renewed, err := c.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.Equal(leaf) || !renewed.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Fatalf("not renewed with the same key")
	}
	if !renewed.Leaf.NotAfter.After(leaf.NotAfter) {
		t.Errorf("renewed certificate expires %v, the old one %v", renewed.Leaf.NotAfter, leaf.NotAfter)
	}
	if same, _ := c.Certificate(); !same.Leaf.Equal(renewed.Leaf) {
		t.Errorf("renewed twice")
	}

	// Another name re-issues it (the operator set CAPIF_CCF_NAME).
	other, err := (&CCF{Dir: dir, Name: "core-1", CA: ca, Now: c.Now}).Certificate()
	if err != nil || other.Leaf.Subject.CommonName != "core-1" {
		t.Fatalf("renamed: %v, %v", other.Leaf.Subject, err)
	}
}

func TestCCFCertificateConcurrent(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	certs := make([]*x509.Certificate, 8)
	for i := range certs {
		wg.Go(func() {
			c, err := (&CCF{Dir: dir, Name: "ccf", CA: ca}).Certificate()
			if err != nil {
				t.Error(err)
				return
			}
			certs[i] = c.Leaf
		})
	}
	wg.Wait()
	for _, c := range certs[1:] {
		if c != nil && !c.Equal(certs[0]) {
			t.Fatal("concurrent first uses minted different certificates")
		}
	}
}

func TestCCFCertificateBrokenFile(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CCFKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&CCF{Dir: dir, Name: "ccf", CA: ca}).Certificate(); err == nil {
		t.Fatal("a garbage key file was accepted")
	}
}
