package main

// BenchmarkLoopback is the loopback load generator of issue 11: the runner (run(), in process,
// embedded store and local key) under keep-alive mTLS clients, next to a reference server of
// bare minimum work with the same TLS set-up (certificate from the same dev CA, client
// certificates requested and verified, the same HTTP versions: TLSConfig's defaults), net/http,
// one map lookup, one ES256 signature of the same claims and the same response body. Bounded
// in requests (CAPIF_LOAD_REQUESTS per round, default 3000) and in time (each round gives up
// after 60 s); every error counts and fails the benchmark.
//
//	go test -run '^$' -bench Loopback -benchtime 1x ./cmd/capif-local/
//
// It reports runner and reference tokens/s, their ratio (budget ≥ 0.9), p99 latencies, and, for
// the mixed profile (create, get, update, tokens, revoke per invoker), requests/s and p99.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/local"
)

const (
	loadClients = 16
	loadAEF     = "aef-load"
	loadAPI     = "api-load"
	loadAPIName = "load-api"
	loadScope   = "3gpp#" + loadAEF + ":" + loadAPIName
)

func loadInvoker(i int) string { return fmt.Sprintf("load-inv-%03d", i) }

func loadRequests() int {
	if n, err := strconv.Atoi(os.Getenv("CAPIF_LOAD_REQUESTS")); err == nil && n > 0 {
		return n
	}
	return 3000
}

// loadRunner starts run() on a fresh data directory with a registry of loadClients invokers and
// one AEF publishing one OAUTH API.
func loadRunner(b *testing.B) (baseURL string, ca *devpki.CA) {
	b.Helper()
	dir := b.TempDir()
	doc := security.RegistryDoc{
		AEFs: []security.AEFRecord{{AefID: loadAEF}},
		ServiceAPIs: []capif.ServiceAPIDescription{{APIName: loadAPIName, APIID: loadAPI,
			AefProfiles: []capif.AefProfile{{AefID: loadAEF, SecurityMethods: []string{"OAUTH"}, DomainName: "aef.example.com"}}}},
	}
	for i := range loadClients {
		doc.APIInvokers = append(doc.APIInvokers, security.InvokerRecord{APIInvokerID: loadInvoker(i)})
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	reg := filepath.Join(dir, "registry.json")
	if err := os.WriteFile(reg, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	cfg, err := parseConfig([]string{"-addr", "127.0.0.1:0", "-data", data, "-issuer", "https://ccf.test", "-registry", reg}, func(string) string { return "" }, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil)) // the access log is written (and its cost paid), not kept
	go func() { done <- run(ctx, cfg, logger, func(u string) { ready <- u }) }()
	select {
	case baseURL = <-ready:
	case err := <-done:
		cancel()
		b.Fatalf("runner: %v", err)
	}
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("runner: %v", err)
		}
	})
	if ca, err = devpki.LoadOrCreateCA(data); err != nil {
		b.Fatal(err)
	}
	return baseURL, ca
}

// referenceServer is the bare minimum a token endpoint must do, with the runner's TLS set-up
// (cmd/capif-local run: TLS ≥ 1.2, a dev-CA server certificate, VerifyClientCertIfGiven with
// the dev CA, net/http's default HTTP versions; sameTransport checks that both answer with the
// same protocol, TLS version and cipher suite).
func referenceServer(b testing.TB, ca *devpki.CA) string {
	b.Helper()
	key, err := local.Generate()
	if err != nil {
		b.Fatal(err)
	}
	allowed := map[string]string{} // invoker → granted scope: the one map lookup
	for i := range loadClients {
		allowed[loadInvoker(i)] = loadScope
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Server([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				http.Error(w, "no certificate", http.StatusUnauthorized)
				return
			}
			leaf := r.TLS.PeerCertificates[0]
			id := leaf.Subject.CommonName
			scope, ok := allowed[id]
			if !ok || r.FormValue("client_id") != id {
				http.Error(w, "unknown", http.StatusUnauthorized)
				return
			}
			now := time.Now()
			tok, err := key.Sign(r.Context(), capif.TokenClaims{Issuer: "https://ccf.test", Subject: id, ClientID: id,
				Audience: []string{loadAEF}, Scope: scope, IssuedAt: now.Unix(), Expiry: now.Add(10 * time.Minute).Unix(),
				ID: "0123456789abcdef", Confirmation: &capif.Confirmation{X5tS256: capif.CertThumbprint(leaf.Raw)}})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			body, _ := json.Marshal(capif.AccessTokenRsp{AccessToken: tok, TokenType: "Bearer", ExpiresIn: 600, Scope: scope})
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
		}),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert.TLS},
			ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

// loadClient is one keep-alive mTLS client presenting invoker i's (or aef's) certificate.
func loadClient(b testing.TB, ca *devpki.CA, id string) *http.Client {
	b.Helper()
	issued, err := ca.Client(id, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{issued.TLS}, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 4, ForceAttemptHTTP2: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

type loadResult struct {
	n, errors int
	elapsed   time.Duration
	latencies []time.Duration
	firstErr  error
}

func (r loadResult) perSecond() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r loadResult) p99() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// drive runs total calls of do spread over the clients, at most deadline long.
func drive(total int, deadline time.Duration, do func(client int) error) loadResult {
	var next atomic.Int64
	var mu sync.Mutex
	res := loadResult{latencies: make([]time.Duration, 0, total)}
	stop := time.Now().Add(deadline)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range loadClients {
		wg.Go(func() {
			for next.Add(1) <= int64(total) && time.Now().Before(stop) {
				t0 := time.Now()
				err := do(c)
				d := time.Since(t0)
				mu.Lock()
				res.n++
				res.latencies = append(res.latencies, d)
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if res.n < total && res.firstErr == nil {
		res.firstErr = fmt.Errorf("only %d of %d requests within %s", res.n, total, deadline)
		res.errors++
	}
	return res
}

func call(c *http.Client, method, target, ctype string, body []byte, want int) error {
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d, want %d: %.200s", method, target, resp.StatusCode, want, got)
	}
	return nil
}

func tokenForm(inv string) []byte {
	return []byte(url.Values{"grant_type": {"client_credentials"}, "client_id": {inv}, "scope": {loadScope}}.Encode())
}

func contextBody(dest string) []byte {
	raw, _ := json.Marshal(capif.ServiceSecurity{NotificationDestination: dest,
		SecurityInfo: []capif.SecurityInformation{{AefID: loadAEF, APIID: loadAPI, PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH}}}})
	return raw
}

func BenchmarkLoopback(b *testing.B) {
	runnerURL, ca := loadRunner(b)
	refURL := referenceServer(b, ca)
	clients := make([]*http.Client, loadClients)
	for i := range clients {
		clients[i] = loadClient(b, ca, loadInvoker(i))
	}
	aef := loadClient(b, ca, loadAEF)
	// The invokers' notification endpoint: on loopback, so a revocation's notification is
	// delivered at once instead of waiting out a timeout on an unreachable host.
	var notified atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		notified.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(receiver.Close)
	dest, dest2 := receiver.URL+"/cb", receiver.URL+"/cb2"
	invPath := func(inv string) string { return runnerURL + httpapi.Base + "/trustedInvokers/" + inv }
	for i := range loadClients {
		if err := call(clients[i], http.MethodPut, invPath(loadInvoker(i)), "application/json", contextBody(dest), http.StatusCreated); err != nil {
			b.Fatal(err)
		}
	}
	total := loadRequests()
	tokens := func(base string) func(int) error {
		return func(c int) error {
			inv := loadInvoker(c)
			return call(clients[c], http.MethodPost, base+httpapi.Base+"/securities/"+inv+"/token", "application/x-www-form-urlencoded", tokenForm(inv), http.StatusOK)
		}
	}
	if err := sameTransport(clients[0], runnerURL, refURL, tokenForm(loadInvoker(0))); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		// Warm both (connections, caches), then alternate, so that the two share the machine's
		// state as evenly as a shared 2-core box allows; the ratio is of the sums.
		drive(loadClients*20, time.Minute, tokens(runnerURL))
		drive(loadClients*20, time.Minute, tokens(refURL))
		var run, ref loadResult
		for range 3 {
			r := drive(total/3, time.Minute, tokens(runnerURL))
			f := drive(total/3, time.Minute, tokens(refURL))
			for _, p := range []struct{ dst, src *loadResult }{{&run, &r}, {&ref, &f}} {
				p.dst.n += p.src.n
				p.dst.errors += p.src.errors
				p.dst.elapsed += p.src.elapsed
				p.dst.latencies = append(p.dst.latencies, p.src.latencies...)
				p.dst.firstErr = errors.Join(p.dst.firstErr, p.src.firstErr)
			}
		}
		mixed := drive(max(loadClients, total/(3*mixedRequests)), time.Minute, func(c int) error { return mixedCycle(clients[c], aef, runnerURL, c, dest, dest2) })
		for name, r := range map[string]loadResult{"runner tokens": run, "reference tokens": ref, "mixed cycles": mixed} {
			if r.errors > 0 {
				b.Fatalf("%s: %d errors, first: %v", name, r.errors, r.firstErr)
			}
		}
		if notified.Load() == 0 {
			b.Fatal("no revocation notification reached the receiver")
		}
		b.ReportMetric(run.perSecond(), "runner-tokens/s")
		b.ReportMetric(ref.perSecond(), "reference-tokens/s")
		b.ReportMetric(run.perSecond()/ref.perSecond(), "runner/reference")
		b.ReportMetric(float64(run.p99().Microseconds())/1000, "runner-p99-ms")
		b.ReportMetric(float64(ref.p99().Microseconds())/1000, "reference-p99-ms")
		b.ReportMetric(mixed.perSecond()*mixedRequests, "mixed-requests/s")
		b.ReportMetric(float64(mixed.p99().Microseconds())/1000, "mixed-cycle-p99-ms")
	}
}

// mixedRequests is the number of requests in one mixedCycle.
const mixedRequests = 7

// mixedCycle is one invoker's life on the runner: update its context, the AEF reads it, three
// tokens, the AEF revokes it (the context goes: its only entry is revoked), and it is created
// again, so the next cycle starts where this one did.
func mixedCycle(inv, aef *http.Client, base string, c int, dest, dest2 string) error {
	id := loadInvoker(c)
	p := base + httpapi.Base + "/trustedInvokers/" + id
	steps := []func() error{
		func() error {
			return call(inv, http.MethodPost, p+"/update", "application/json", contextBody(dest2), http.StatusOK)
		},
		func() error { return call(aef, http.MethodGet, p+"?authenticationInfo=true", "", nil, http.StatusOK) },
		func() error {
			return call(inv, http.MethodPost, base+httpapi.Base+"/securities/"+id+"/token", "application/x-www-form-urlencoded", tokenForm(id), http.StatusOK)
		},
		func() error {
			return call(inv, http.MethodPost, base+httpapi.Base+"/securities/"+id+"/token", "application/x-www-form-urlencoded", tokenForm(id), http.StatusOK)
		},
		func() error {
			return call(inv, http.MethodPost, base+httpapi.Base+"/securities/"+id+"/token", "application/x-www-form-urlencoded", tokenForm(id), http.StatusOK)
		},
		func() error {
			n, _ := json.Marshal(capif.SecurityNotification{APIInvokerID: id, AefID: loadAEF, APIIDs: []string{loadAPI}, Cause: capif.OverlimitUsage})
			return call(aef, http.MethodPost, p+"/delete", "application/json", n, http.StatusNoContent)
		},
		func() error {
			return call(inv, http.MethodPut, p, "application/json", contextBody(dest), http.StatusCreated)
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// sameTransport fails unless the runner and the reference answer a token request over the same
// HTTP version, TLS version and cipher suite, with a verified client certificate on both.
func sameTransport(c *http.Client, runnerURL, refURL string, form []byte) error {
	var seen []string
	for _, base := range []string{runnerURL, refURL} {
		id := loadInvoker(0)
		resp, err := c.Post(base+httpapi.Base+"/securities/"+id+"/token", "application/x-www-form-urlencoded", bytes.NewReader(form))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil {
			return fmt.Errorf("%s: status %d", base, resp.StatusCode)
		}
		seen = append(seen, fmt.Sprintf("%s %s %s", resp.Proto, tls.VersionName(resp.TLS.Version), tls.CipherSuiteName(resp.TLS.CipherSuite)))
	}
	if seen[0] != seen[1] {
		return fmt.Errorf("runner answers over %s, the reference over %s", seen[0], seen[1])
	}
	return nil
}
