package devpki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// helperEnv makes the test binary a CA user: it loads or creates the CA of the directory named
// there, issues a client certificate and prints it (TestLoadOrCreateCAAcrossProcesses).
const helperEnv = "DEVPKI_TEST_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		ca, err := LoadOrCreateCA(dir)
		if err == nil {
			var issued *Issued
			if issued, err = ca.Client("invoker-1", time.Hour); err == nil {
				os.Stdout.Write(issued.CertPEM)
				os.Exit(0)
			}
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// verifies checks that every certificate verifies against the CA now on disk in dir.
func verifies(t *testing.T, dir string, certs [][]byte) {
	t.Helper()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil || !bytes.Equal(onDisk, ca.PEM) {
		t.Fatalf("ca.pem differs from the loaded CA (%v)", err)
	}
	for i, c := range certs {
		b, _ := pem.Decode(c)
		if b == nil {
			t.Fatalf("certificate %d is not PEM: %q", i, c)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("certificate %d does not verify against %s: %v", i, filepath.Join(dir, CAFile), err)
		}
	}
}

// Many goroutines on a fresh directory get one CA, and every certificate verifies.
func TestLoadOrCreateCAConcurrent(t *testing.T) {
	for trial := range 30 {
		dir := filepath.Join(t.TempDir(), "data")
		const n = 8
		certs := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ca, err := LoadOrCreateCA(dir)
				if err != nil {
					errs[i] = err
					return
				}
				issued, err := ca.Client("invoker-1", time.Hour)
				if err != nil {
					errs[i] = err
					return
				}
				certs[i] = issued.CertPEM
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("trial %d, caller %d: %v", trial, i, err)
			}
		}
		verifies(t, dir, certs)
	}
}

// The same across processes: the test binary re-executed as CA users, started at once.
func TestLoadOrCreateCAAcrossProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for trial := range 15 {
		dir := filepath.Join(t.TempDir(), "data")
		const n = 4
		cmds := make([]*exec.Cmd, n)
		outs := make([]*bytes.Buffer, n)
		for i := range n {
			cmds[i] = exec.Command(exe)
			cmds[i].Env = append(os.Environ(), helperEnv+"="+dir)
			outs[i] = &bytes.Buffer{}
			cmds[i].Stdout = outs[i]
			cmds[i].Stderr = outs[i]
		}
		for _, c := range cmds {
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
		}
		certs := make([][]byte, n)
		for i, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Fatalf("trial %d, process %d: %v: %s", trial, i, err, outs[i])
			}
			certs[i] = outs[i].Bytes()
		}
		verifies(t, dir, certs)
	}
}

func TestLoadOrCreateCABrokenDirs(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Restart: the same CA.
	again, err := LoadOrCreateCA(dir)
	if err != nil || !bytes.Equal(again.PEM, ca.PEM) {
		t.Fatalf("reload: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	// No temporary file is left behind.
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".*tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	// A key without a certificate (a crash between the two) is replaced.
	if err := os.Remove(filepath.Join(dir, CAFile)); err != nil {
		t.Fatal(err)
	}
	if fresh, err := LoadOrCreateCA(dir); err != nil || bytes.Equal(fresh.PEM, ca.PEM) {
		t.Errorf("key without certificate: %v", err)
	}
	// A certificate without its key, or with another key, is named with the fix.
	other, _ := NewCA("other")
	if err := os.WriteFile(filepath.Join(dir, CAFile), other.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); err == nil || !bytes.Contains([]byte(err.Error()), []byte("does not match")) {
		t.Errorf("mismatched key: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); err == nil || !bytes.Contains([]byte(err.Error()), []byte("remove "+filepath.Join(dir, CAFile))) {
		t.Errorf("certificate without key: %v", err)
	}
}
