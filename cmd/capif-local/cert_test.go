package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// mainEnv makes the test binary the command itself: main() with the binary's arguments, so
// exit codes and signals are the real ones.
const mainEnv = "CAPIF_LOCAL_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// command returns the test binary as capif-local with args.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	for _, k := range []string{"CAPIF_DATA", "CAPIF_REGISTRY", "CAPIF_STORE", "CAPIF_SIGNER", "CAPIF_ADDR"} {
		cmd.Env = append(cmd.Env, k+"=")
	}
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"-h"}, 0, "capif-local cert -id ID"},
		{"help lists the flags", []string{"-help"}, 0, "-registry"},
		{"cert help", []string{"cert", "-h"}, 0, "-valid-for"},
		{"missing registry", []string{"-addr", "127.0.0.1:0", "-data", dir, "-registry", filepath.Join(dir, "absent.json")}, 1,
			"registry file " + filepath.Join(dir, "absent.json") + " does not exist"},
		{"unknown flag", []string{"-frobnicate"}, 1, "flag provided but not defined"},
		{"cert without id", []string{"cert", "-data", dir}, 1, "-id is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := command(t, tc.args...).CombinedOutput()
			if code := exitCode(t, err); code != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %d, want %d; output lacks %q?\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}

// server starts capif-local on dir with the example registry and returns it once it listens,
// with its URL.
func server(t *testing.T, dir string) (*exec.Cmd, string, *testenv.Buffer) {
	t.Helper()
	return startServer(t, "-addr", "127.0.0.1:0", "-log-format", "json", "-data", dir, "-registry", filepath.Join("..", "..", "examples", "registry.json"))
}

// startServer runs capif-local (this test binary as its main) with args until it listens.
func startServer(t *testing.T, args ...string) (*exec.Cmd, string, *testenv.Buffer) {
	t.Helper()
	cmd := command(t, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "capif-local listening on "); ok {
				urls <- u
			}
		}
		close(urls)
	}()
	select {
	case u, ok := <-urls:
		if !ok {
			t.Fatalf("capif-local exited before listening:\n%s", logs)
		}
		return cmd, u, logs
	case <-time.After(30 * time.Second):
		t.Fatalf("capif-local not listening within 30s:\n%s", logs)
	}
	return nil, "", nil
}

// handshake connects to the server at url as the holder of dir/clients/id.pem, trusting only
// dir/ca.pem: it succeeds only if the server's CA, the file and the certificate agree.
func handshake(t *testing.T, dir, url, id string) error {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return errors.New("ca.pem holds no certificate")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "clients", id+".pem"), filepath.Join(dir, "clients", id+"-key.pem"))
	if err != nil {
		return err
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}})
	if err != nil {
		return err
	}
	defer conn.Close()
	// TLS 1.3 reports a refused client certificate on the first read.
	if _, err := fmt.Fprintf(conn, "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("client certificate refused: %w", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

// `make run &` followed at once by `capif-local cert`, and two certs at once, on a fresh data
// directory: the certificates always verify, against the file and against the server.
func TestCertWhileTheRunnerStarts(t *testing.T) {
	for trial := range stressTrials(3) {
		dir := filepath.Join(t.TempDir(), "data")
		certs := make([]*exec.Cmd, 2)
		outs := make([][]byte, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range certs {
			certs[i] = command(t, "cert", "-data", dir, "-id", []string{"invoker-1", "aef-1"}[i])
		}
		srvDone := make(chan struct{})
		var srv *exec.Cmd
		var url string
		var logs *testenv.Buffer
		go func() { defer close(srvDone); srv, url, logs = server(t, dir) }()
		for i, c := range certs {
			wg.Go(func() { outs[i], errs[i] = c.CombinedOutput() })
		}
		wg.Wait()
		<-srvDone
		if srv == nil {
			t.FailNow()
		}
		for i := range certs {
			if errs[i] != nil {
				t.Fatalf("trial %d: cert %d: %v\n%s", trial, i, errs[i], outs[i])
			}
		}
		for _, id := range []string{"invoker-1", "aef-1"} {
			if err := handshake(t, dir, url, id); err != nil {
				t.Fatalf("trial %d: %s: %v\n%s", trial, id, err, logs)
			}
		}
		// SIGTERM stops it cleanly: exit 0, the store closed.
		if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := srv.Wait(); err != nil || !strings.Contains(logs.String(), `"msg":"stopped"`) {
			t.Fatalf("after SIGTERM: %v\n%s", err, logs)
		}
	}
}

// A data directory whose store another process holds is named as such.
func TestLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	db, err := embedded.Open(filepath.Join(dir, "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t.Setenv("CAPIF_STORE", "")
	err = mainErr(context.Background(), []string{"-addr", "127.0.0.1:0", "-data", dir}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another process holds the data directory "+dir) {
		t.Errorf("error %v, want the lock holder named", err)
	}
}

// stressTrials is how many times a race test repeats its trial: n, 20 under CAPIF_STRESS=1 (a
// hunt for a rare interleaving), one with -short.
func stressTrials(n int) int {
	switch {
	case os.Getenv("CAPIF_STRESS") == "1":
		return 20
	case testing.Short():
		return 1
	}
	return n
}

// Ctrl-C while a client uploads slowly: the runner says what it waits for and for how long, and
// keeps waiting; a second Ctrl-C stops it at once.
func TestSecondInterruptStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	srv, url, logs := server(t, dir)
	ca, err := devpki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Client("invoker-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{issued.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A PUT whose body never finishes: the runner waits for it.
	fmt.Fprintf(conn, "PUT /capif-security/v1/trustedInvokers/invoker-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"securityInfo\":[")
	time.Sleep(100 * time.Millisecond) // the handler has the request (no event tells the client)
	if err := srv.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), `"msg":"stopping"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no stopping line:\n%s", logs)
		}
	}
	if line := logs.String(); !strings.Contains(line, `"waitingFor":"in-flight requests`) || !strings.Contains(line, `"atMost":20000000000`) || !strings.Contains(line, "Ctrl-C again") {
		t.Errorf("the stopping line does not say what it waits for and how long:\n%s", line)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("stopped with a request still uploading (%v):\n%s", err, logs)
	case <-time.After(500 * time.Millisecond): // still waiting for the upload, as it said
	}
	start := time.Now()
	if err := srv.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if exitCode(t, err) != 1 || !strings.Contains(logs.String(), "stopped at once") {
			t.Errorf("second Ctrl-C: exit %v\n%s", err, logs)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the second Ctrl-C took %v", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after the second Ctrl-C:\n%s", logs)
	}
}
