package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/examples/internal/ccftest"
	"github.com/capifcore/capif-security/shared/devpki"
)

// The example AEF, started in-process against a JWKS served over mutual TLS: the token lets its
// own invoker in, and the same token replayed on another invoker's connection is refused.
func TestExampleAEF(t *testing.T) {
	ccf := ccftest.Start(t)
	ccf.Client("aef-1")
	_, _, invoker1 := ccf.Client("invoker-1")
	_, _, invoker2 := ccf.Client("invoker-2")

	ctx, cancel := context.WithCancel(t.Context())
	addrc, errc := make(chan string, 1), make(chan error, 1)
	go func() {
		errc <- run(ctx, config{addr: "127.0.0.1:0", dataDir: ccf.Dir, ccf: ccf.URL, issuer: ccftest.Issuer, aefID: "aef-1", api: "monitoring-event"},
			func(addr string) { addrc <- addr })
	}()
	var url string
	select {
	case addr := <-addrc:
		url = "https://" + addr + "/monitoring-event/subscriptions"
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}

	call := func(cert *devpki.Issued, tok string) (int, string, string) {
		t.Helper()
		cfg := &tls.Config{RootCAs: ccf.CA.Pool()}
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

	good := ccf.Token("3gpp#aef-1:monitoring-event", invoker1)
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
		{"a token for another API", invoker1, ccf.Token("3gpp#aef-1:qos-session", invoker1), 403, `error="insufficient_scope"`},
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
