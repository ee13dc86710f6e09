package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/aeftest"
	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
)

// withRoots is the test registry with aefSecurityRoots.
func withRoots(roots map[string]string) security.RegistryDoc {
	doc := testRegistry()
	for i, a := range doc.AEFs {
		if root, ok := roots[a.AefID]; ok {
			doc.AEFs[i].AefSecurityRoot = &root
		}
	}
	return doc
}

// closedPort is an https URL where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "https://" + addr
}

// TestRevocationPushes: the API's revocations (POST …/delete, DELETE) push a
// RevokeAuthorizationReq to the revoking AEF over mutual TLS with the CCF's certificate before
// the 204; an AEF that fails is retried by the worker as issue 20's table says, with the log
// levels it gives. On every back end.
func TestRevocationPushes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			aefs := aeftest.Start(t)
			doc := withRoots(map[string]string{aefA: aefs.Root("a"), aefB: aefs.Root("b"), aefC: closedPort(t)})
			r := startRunnerWith(t, b, doc, "-aef-ca", aefs.CAFile, "-retry-base", "100ms", "-retry-cap", "300ms", "-retry-window", "4s",
				"-delivery-interval", "100ms", "-notify-timeout", notifyTimeout.String())
			aefs.TrustClients(r.ca.Pool())
			ccfLeaf := ccfCertificate(t, r)

			inv := r.freshInvoker(t)
			snk := newSink(t, http.StatusNoContent)
			wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(snk.url("/n"), aefEntry(aefA, apiA1, "OAUTH"), aefEntry(aefB, "", "OAUTH"))), http.StatusCreated)

			// POST …/delete by aef-b: pushed to aef-b only, before the 204, without the token.
			n := capif.SecurityNotification{APIInvokerID: inv, AefID: aefB, APIIDs: []string{apiB1}, Cause: capif.OverlimitUsage, AccessToken: "the.revoked.token"}
			wantStatus(t, r.as(t, aefB).revoke(inv, n), http.StatusNoContent)
			got := aefs.Pushes("b")
			if len(got) != 1 || len(aefs.Pushes("a")) != 0 {
				t.Fatalf("pushes at the 204: b %v, a %v", got, aefs.Pushes("a"))
			}
			n.AccessToken = ""
			if got[0].CN != ccfLeaf.Subject.CommonName || got[0].Req.SupportedFeatures != "0" || !equalJSON(t, got[0].Req.RevokeInfo, n) || got[0].WebhookID == "" {
				t.Errorf("push %s, want %+v from %q", got[0], n, ccfLeaf.Subject.CommonName)
			}
			if note := snk.arrived(t); !strings.Contains(string(note.body), "the.revoked.token") {
				t.Errorf("the invoker's notification lost the revoked token: %s", note.body)
			}

			// DELETE by aef-a.
			wantStatus(t, r.as(t, aefA).revokeAll(inv), http.StatusNoContent)
			if got := aefs.Pushes("a"); len(got) != 1 || !slices.Equal(got[0].Req.RevokeInfo.APIIDs, []string{apiA1}) || got[0].Req.RevokeInfo.Cause != capif.UnexpectedReason {
				t.Fatalf("aef-a's push: %v", got)
			}

			// The AEF's answers (issue 20 §3), each on a fresh revocation by aef-b.
			revokeB := func(t *testing.T) {
				t.Helper()
				inv := r.freshInvoker(t)
				wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(snk.url("/n"), aefEntry(aefB, apiB1, "OAUTH"))), http.StatusCreated)
				wantStatus(t, r.as(t, aefB).revokeAll(inv), http.StatusNoContent)
			}
			for _, row := range []struct {
				name     string
				statuses []int
				attempts int    // pushes the AEF sees in all
				line     string // a log line the outcome writes
			}{
				{"503, 503, then 200: retried with backoff", []int{503, 503}, 3, `"level":"WARN","msg":"notification not delivered; will retry"`},
				{"429 then 200", []int{429}, 2, `"level":"WARN","msg":"notification not delivered; will retry"`},
				{"307: not followed, retried", []int{307}, 2, `"msg":"notification destination redirected; not followed"`},
				{"401: our certificate refused, retried as the service's fault", []int{401}, 2, `"level":"ERROR","msg":"notification not delivered; will retry"`},
				{"404: dead at once, WARN", []int{404}, 1, `"level":"WARN","msg":"notification dead-lettered"`},
			} {
				t.Run(row.name, func(t *testing.T) {
					before, lines, delivered := len(aefs.Pushes("b")), r.countLog(row.line), r.countLog(`"msg":"notification delivered","notificationId"`)
					aefs.Answer("b", row.statuses...)
					revokeB(t)
					aefs.Wait(t, "b", before+row.attempts, 30*time.Second)
					r.waitLog(t, row.line, lines+1)
					if row.attempts > 1 { // the invoker's notification and, at last, the push
						r.waitLog(t, `"msg":"notification delivered","notificationId"`, delivered+2)
					}
					time.Sleep(300 * time.Millisecond) // three worker runs: none pushes again
					if got := len(aefs.Pushes("b")) - before; got != row.attempts {
						t.Errorf("%d pushes, want %d", got, row.attempts)
					}
					ids := map[string]bool{}
					for _, p := range aefs.Pushes("b")[before:] {
						ids[p.WebhookID] = true
					}
					if len(ids) != 1 {
						t.Errorf("the attempts of one push carried %d webhook-ids", len(ids))
					}
				})
			}

			// Nothing listens at aef-c: each attempt DEBUG, one WARN when it is dead.
			inv = r.freshInvoker(t)
			wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(snk.url("/n"), aefEntry(aefC, apiC1, "OAUTH"))), http.StatusCreated)
			warned := r.countLog(`"level":"WARN","msg":"notification dead-lettered","notificationId"`)
			wantStatus(t, r.as(t, aefC).revokeAll(inv), http.StatusNoContent)
			r.waitLog(t, `"level":"WARN","msg":"notification dead-lettered","notificationId"`, warned+1)
			if n := r.countLog(`"level":"DEBUG","msg":"notification not delivered; will retry"`); n < 2 {
				t.Errorf("%d DEBUG lines for the refused connections, want one per attempt", n)
			}
			if strings.Contains(r.logs.String(), `"level":"ERROR","msg":"notification dead-lettered"`) {
				t.Errorf("a dead letter the destination caused was logged as an ERROR")
			}
		})
	}
}

// ccfCertificate is the certificate the runner presents to AEFs: DATA/ccf.pem, from its dev CA.
func ccfCertificate(t *testing.T, r *runner) *x509.Certificate {
	t.Helper()
	c, err := (&devpki.CCF{Dir: r.dataDir, Name: security.DefaultCCFName, CA: r.ca}).Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestOldWorkerMidDeploy: during a deployment, a worker of the previous version finds an AEF's
// record and POSTs its bare SecurityNotification without a CCF certificate: the AEF refuses it,
// the record stays (retried, not dead), and the new code delivers it.
func TestOldWorkerMidDeploy(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testOldWorkerMidDeploy(t, b) })
	}
}

func testOldWorkerMidDeploy(t *testing.T, b backend) {
	aefs := aeftest.Start(t)
	doc := withRoots(map[string]string{aefA: aefs.Root("a")})
	r := startRunnerWith(t, b, doc, "-aef-ca", aefs.CAFile, "-delivery-interval", "1h", "-retry-base", "50ms", "-retry-cap", "50ms")
	aefs.TrustClients(r.ca.Pool())
	inv := r.freshInvoker(t)
	snk := newSink(t, http.StatusNoContent)
	wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(snk.url("/n"), aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	aefs.Answer("a", http.StatusServiceUnavailable) // the inline attempt fails: the record stays
	wantStatus(t, r.as(t, aefA).revokeAll(inv), http.StatusNoContent)
	aefs.Wait(t, "a", 1, 10*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// The old worker: the record as it reads it (no kind), its notifier (no CCF certificate).
	a := openStore(t, r)
	owed, err := a.Service.Outbox(context.Background())
	if err != nil || len(owed) != 1 || owed[0].Receiver() != security.ToAEF {
		t.Fatalf("outbox %+v, %v", owed, err)
	}
	old := notify.New(notify.Options{AllowLoopback: true})
	err = old.Notify(context.Background(), security.Delivery{ID: owed[0].ID, Destination: owed[0].Destination, Body: owed[0].Notification})
	if err == nil || errors.Is(err, security.ErrUndeliverable) {
		t.Fatalf("the old worker's attempt: %v, want a refusal that is retried", err)
	}
	// It records the attempt as it knows the record: without the kind.
	o, now := owed[0], time.Now().Add(time.Second) // due: its backoff (-retry-cap 50ms) is over
	o.Kind = ""
	if err := a.Store.Claim(context.Background(), o, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	held := now.Add(time.Minute)
	o.ClaimedUntil, o.Attempts, o.LastError, o.NextAttempt = time.Time{}, o.Attempts+1, err.Error(), now
	if err := a.Store.Attempted(context.Background(), o, held); err != nil {
		t.Fatal(err)
	}
	if owed, _ := a.Service.Outbox(context.Background()); len(owed) != 1 || owed[0].Receiver() != security.ToAEF {
		t.Fatalf("after the old worker: %+v, want the push (its kind kept, or lost and read from its id)", owed)
	}
	_ = a.Close()
	// The new code delivers it.
	r2 := r.restart(t, "-aef-ca", aefs.CAFile, "-delivery-interval", "100ms")
	r2.waitLog(t, `"msg":"notification delivered"`, 1)
	got := aefs.Pushes("a")
	if last := got[len(got)-1]; last.CN != security.DefaultCCFName || last.Req.RevokeInfo.APIInvokerID != inv {
		t.Errorf("delivered %s", last)
	}
	r2.stop(t)
	a = openStore(t, r2)
	defer a.Close()
	if owed, err := a.Service.Outbox(context.Background()); err != nil || len(owed) != 0 {
		t.Errorf("outbox after delivery: %+v, %v", owed, err)
	}
}

// openStore opens r's store (the runner stopped, for the embedded one) as capif-admin would.
func openStore(t *testing.T, r *runner) *app.App {
	t.Helper()
	a, err := fullapp.Open(context.Background(), app.Config{Settings: r.cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAEFDownThenBack: an AEF that is down for 30 s gets the push once it is back, within the
// bound the README states: the backoff after the last failure, at most
// min(-retry-cap, -retry-base·2^(n−1)), plus one -delivery-interval (and the attempt itself).
func TestAEFDownThenBack(t *testing.T) {
	const (
		retryBase = time.Second
		retryCap  = 4 * time.Second
		interval  = 500 * time.Millisecond
		down      = 30 * time.Second
	)
	aefs := aeftest.Start(t)
	r := startRunnerWith(t, backends[0], withRoots(map[string]string{aefA: aefs.Root("a")}), "-aef-ca", aefs.CAFile,
		"-retry-base", retryBase.String(), "-retry-cap", retryCap.String(), "-delivery-interval", interval.String(), "-notify-timeout", notifyTimeout.String())
	aefs.TrustClients(r.ca.Pool())
	inv := r.freshInvoker(t)
	snk := newSink(t, http.StatusNoContent)
	wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(snk.url("/n"), aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	aefs.Down()
	wantStatus(t, r.as(t, aefA).revokeAll(inv), http.StatusNoContent)
	time.Sleep(down)
	failed := r.countLog(`"level":"DEBUG","msg":"notification not delivered; will retry","notificationId"`)
	back := time.Now()
	aefs.Up(t)
	got := aefs.Wait(t, "a", 1, time.Minute)
	delay := got[0].At.Sub(back)
	backoff := min(retryCap, retryBase<<min(failed-1, 30))
	bound := backoff + interval + notifyTimeout
	t.Logf("AEF down %s, %d failed attempts; pushed %s after it was back (bound %s: backoff ≤ %s, interval %s, one attempt)",
		down, failed, delay.Round(time.Millisecond), bound, backoff, interval)
	if failed < 3 || delay > bound {
		t.Errorf("%d failed attempts, delay %s: want several, and within %s", failed, delay, bound)
	}
}

// TestRevocationReachesTheAEF: end to end on the runner with an AEF on shared/aefauth (as
// examples/aef): a token gets in; the AEF's own DELETE; the same token is refused at once, with
// no wait for a retry (the inline push precedes the 204). 20 runs; the time from sending the
// revocation to the AEF's first 401 "revoked" is logged (BENCHMARKS.md), send → 204 beside it.
func TestRevocationReachesTheAEF(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "https://" + ln.Addr().String()
	r := startRunnerWith(t, backends[0], withRoots(map[string]string{aefA: root}))
	ccf := ccfCertificate(t, r)
	// The AEF fetches the JWKS as aef-a, through the harness (every answer is checked and logged).
	v, err := aefauth.New(aefauth.Config{JWKSURL: r.url + "/.well-known/jwks.json", Client: r.as(t, aefA).hc,
		Issuer: "https://ccf.test", AefID: aefA, DenyList: aefauth.NewMemoryList(), APIs: map[string]string{"alpha-one": apiA1},
		CCFRoots: r.ca.Pool(), CCFPins: []string{aefauth.SPKIPin(ccf)}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/alpha-one/", v.For("alpha-one").Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })))
	mux.Handle(capif.AEFSecurityAPIPath+"/", v.SecurityAPI())
	serverCert, err := r.ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: r.ca.Pool()},
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	snk := newSink(t, http.StatusNoContent)
	var toRefusal, to204 []time.Duration
	for range 20 {
		inv := r.freshInvoker(t)
		owner := r.as(t, inv)
		wantStatus(t, owner.create(inv, serviceSecurity(snk.url("/n"), aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
		resp := owner.tokenReq(inv, grant(inv, "scope", "3gpp#"+aefA+":alpha-one"))
		wantStatus(t, resp, http.StatusOK)
		token := decode[capif.AccessTokenRsp](t, resp).AccessToken
		cert, _ := r.certs.Load(inv)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.ca.Pool(), Certificates: []tls.Certificate{cert.(tls.Certificate)}}}}
		call := func() (int, string) {
			req, _ := http.NewRequest(http.MethodGet, root+"/alpha-one/x", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
		}
		if status, _ := call(); status != http.StatusOK {
			t.Fatalf("before the revocation: %d", status)
		}
		start := time.Now()
		wantStatus(t, r.as(t, aefA).revokeAll(inv), http.StatusNoContent)
		to204 = append(to204, time.Since(start))
		status, challenge := call()
		if status != http.StatusUnauthorized || !strings.Contains(challenge, `error_description="revoked"`) {
			t.Fatalf("right after the 204: %d %q, want 401 revoked", status, challenge)
		}
		toRefusal = append(toRefusal, time.Since(start))
		_ = snk.arrived(t)
		hc.CloseIdleConnections()
	}
	slices.Sort(toRefusal)
	slices.Sort(to204)
	t.Logf("revocation sent → the AEF's first 401 \"revoked\": median %s, worst %s; sent → 204: median %s, worst %s (20 runs)",
		toRefusal[10].Round(10*time.Microsecond), toRefusal[19].Round(10*time.Microsecond), to204[10].Round(10*time.Microsecond), to204[19].Round(10*time.Microsecond))
}
