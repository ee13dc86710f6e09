package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/local"
)

// The example AEF, started in-process against a JWKS served over mutual TLS: the token lets its
// own invoker in, and the same token replayed on another invoker's connection is refused.
func TestExampleAEF(t *testing.T) {
	dir := t.TempDir()
	ca, err := devpki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id string) *devpki.Issued {
		t.Helper()
		c, err := ca.Client(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	aefCert := issue("aef-1")
	clients := filepath.Join(dir, "clients")
	if err := os.MkdirAll(clients, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clients, "aef-1.pem"), aefCert.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clients, "aef-1-key.pem"), aefCert.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	invoker1, invoker2 := issue("invoker-1"), issue("invoker-2")

	signer, err := local.Generate()
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := signer.JWKS(t.Context())
	ccf := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(jwks)
	}))
	serverCert, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ccf.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	ccf.Config.ErrorLog = log.New(io.Discard, "", 0)
	ccf.StartTLS()
	defer ccf.Close()

	ctx, cancel := context.WithCancel(t.Context())
	addrc, errc := make(chan string, 1), make(chan error, 1)
	go func() {
		errc <- run(ctx, config{addr: "127.0.0.1:0", dataDir: dir, ccf: ccf.URL, issuer: "https://ccf.test", aefID: "aef-1", api: "monitoring-event"},
			func(addr string) { addrc <- addr })
	}()
	var url string
	select {
	case addr := <-addrc:
		url = "https://" + addr + "/monitoring-event/subscriptions"
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}

	token := func(scope string, holder *devpki.Issued) string {
		now := time.Now().Unix()
		tok, err := signer.Sign(t.Context(), security.TokenClaims{
			Issuer: "https://ccf.test", Subject: "invoker-1", ClientID: "invoker-1", Audience: []string{"aef-1"},
			Scope: scope, IssuedAt: now, Expiry: now + 300, ID: "jti-1",
			Confirmation: &security.Confirmation{X5tS256: security.CertThumbprint(holder.TLS.Leaf.Raw)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(cert *devpki.Issued, tok string) (int, string, string) {
		t.Helper()
		cfg := &tls.Config{RootCAs: ca.Pool()}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{cert.TLS}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)
	}

	good := token("3gpp#aef-1:monitoring-event", invoker1)
	tests := []struct {
		name   string
		cert   *devpki.Issued
		token  string
		status int
		want   string // in the body (200) or the challenge
	}{
		{"the invoker's own token and certificate", invoker1, good, 200, `"apiInvokerId":"invoker-1"`},
		{"the token replayed from another certificate", invoker2, good, 401, `error="invalid_token"`},
		{"the token replayed without a certificate", nil, good, 401, `error="invalid_token"`},
		{"no token", invoker1, "", 401, `Bearer realm="aef-1"`},
		{"a token for another API", invoker1, token("3gpp#aef-1:qos-session", invoker1), 403, `error="insufficient_scope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge, body := call(tc.cert, tc.token)
			if status != tc.status || !strings.Contains(body+challenge, tc.want) {
				t.Errorf("%d %q %s, want %d with %s", status, challenge, body, tc.status, tc.want)
			}
		})
	}

	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run after shutdown: %v", err)
	}
}
