package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
)

// rawConn opens a TLS connection to the runner presenting id's certificate, for requests that
// net/http would refuse to send (bodies shorter than declared, abandoned mid-body).
func (r *runner) rawConn(t *testing.T, id string) *tls.Conn {
	t.Helper()
	issued, err := r.ca.Client(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(r.url)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: r.ca.Pool(), Certificates: []tls.Certificate{issued.TLS}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testBrokenBodies: a body that breaks off is the client's fault: 400 MALFORMED_BODY where an
// answer can still be written, a WARN log line (never an ERROR, never a 5xx).
func testBrokenBodies(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	head := func(path, ctype string, length int) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", path, ctype, length)
	}
	for _, tc := range []struct{ name, path, ctype, body string }{
		{"JSON", invPath(inv) + "/update", "application/json", `{"notificationDestination":"https://x.example.com"`},
		{"form", tokenPath(inv), "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=" + inv},
	} {
		conn := r.rawConn(t, inv)
		// Declared 1000 bytes, sent fewer, then the write side closed: the read ends early.
		fmt.Fprint(conn, head(tc.path, tc.ctype, 1000)+tc.body)
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, r.url+tc.path, nil)
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatalf("%s: no answer to a short body: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.check(t, inv, req, resp, body)
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("could not be read completely")) {
			t.Errorf("%s: short body answered %d %s", tc.name, resp.StatusCode, body)
		}
	}

	// Abandoned mid-body: nobody reads the answer; the log line must still be a client fault.
	before := strings.Count(r.logs.String(), `"clientError"`)
	conn := r.rawConn(t, inv)
	fmt.Fprint(conn, head(invPath(inv)+"/update", "application/json", 1000)+`{"securityInfo":[`)
	_ = conn.Close() // what was sent arrives before the close: the server reads the head, then a body that breaks off
	r.mu.Lock()
	r.unanswered++
	r.mu.Unlock()
	r.waitLog(t, `"clientError"`, before+1)
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if !strings.Contains(line, `"clientError"`) {
			continue
		}
		var l struct {
			Level  string `json:"level"`
			Status int    `json:"status"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Level != "WARN" || l.Status >= 500 {
			t.Errorf("a client's broken body logged as %s", line)
		}
	}
}

// testTokenBinding: the token's cnf.x5t#S256 is what openssl computes from the invoker's
// certificate (RFC 8705 §3.1), so any AEF can check it with stock tools.
func testTokenBinding(t *testing.T, r *runner) {
	for _, tool := range []string{"openssl", "basenc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool, "install openssl and coreutils")
		}
	}
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	resp := r.as(t, inv).tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	claims := r.verifyToken(t, r.jwks(t), decode[capif.AccessTokenRsp](t, resp).AccessToken)
	cnf, _ := claims["cnf"].(map[string]any)
	got, _ := cnf["x5t#S256"].(string)

	cert, _ := r.certs.Load(inv)
	pemPath := filepath.Join(t.TempDir(), "inv.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.(tls.Certificate).Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "-c", `openssl x509 -in "$1" -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d '='`, "bash", pemPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(out)); got == "" || got != want {
		t.Errorf("cnf.x5t#S256 %q, openssl says %q", got, want)
	}
}
