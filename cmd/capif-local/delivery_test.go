package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/notify"
)

// flakyListener fails the first attempts in the ways destinations fail (503, a connection cut
// without an answer, no answer within the notifier's timeout), then accepts; it records every
// attempt's id header.
type flakyListener struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids []string
	ok  chan struct{}
}

func newFlakyListener(t *testing.T) *flakyListener {
	l := &flakyListener{ok: make(chan struct{}, 16)}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.ids = append(l.ids, r.Header.Get(notify.HeaderID))
		n := len(l.ids)
		l.mu.Unlock()
		switch n {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close() // cut off: a transport error
			}
		case 3:
			holdUnanswered(r) // too slow: the notifier's timeout gives up
		default:
			w.WriteHeader(http.StatusNoContent)
			l.ok <- struct{}{}
		}
	}))
	t.Cleanup(l.srv.Close)
	return l
}

// holdUnanswered answers r never: it returns when the client gives up. The body is read first,
// so that net/http watches the connection and cancels r's context when the client closes it.
func holdUnanswered(r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func (l *flakyListener) attempts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// notifyTimeout is the runner's -notify-timeout in the delivery tests: short, so a destination
// that never answers costs the test little.
const notifyTimeout = 300 * time.Millisecond

// testDeliveryRetries: a revocation whose destination fails three times (503, cut, timeout) is
// retried by the runner's worker until one attempt is answered 2xx; no attempt follows it (in
// the two worker runs after it), and every attempt carried the same webhook-id. Runs on both
// back ends.
func testDeliveryRetries(t *testing.T, r *runner) {
	rr := startRunner(t, r.backend, "-retry-base", "100ms", "-retry-cap", "300ms", "-delivery-interval", "100ms", "-claim-lease", "5s",
		"-notify-timeout", notifyTimeout.String())
	l := newFlakyListener(t)
	inv := rr.freshInvoker(t)
	wantStatus(t, rr.as(t, inv).create(inv, serviceSecurity(l.srv.URL+"/cb", aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	start := time.Now()
	wantStatus(t, rr.as(t, aefA).revokeAll(inv), http.StatusNoContent)
	if d := time.Since(start); d > notifyTimeout+2*time.Second {
		t.Errorf("the revocation took %s with a failing destination", d)
	}
	select {
	case <-l.ok:
	case <-time.After(30 * time.Second):
		t.Fatalf("not delivered after %d attempts", len(l.attempts()))
	}
	rr.waitLog(t, `"msg":"notification delivered"`, 1)
	rr.waitLog(t, `"msg":"delivery run"`, rr.countLog(`"msg":"delivery run"`)+2) // two more runs: none attempts it again
	ids := l.attempts()
	if len(ids) != 4 {
		t.Fatalf("%d attempts, want 4 (3 failures, 1 success)", len(ids))
	}
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Errorf("attempt ids %q: not one id on every attempt", ids)
			break
		}
	}
}

// testDeliveryDeadLetter: a destination that never answers: the revocation still answers within
// the notifier's timeout, and the record is dead-lettered once the (shortened) window ends.
func testDeliveryDeadLetter(t *testing.T, r *runner) {
	rr := startRunner(t, r.backend, "-retry-base", "50ms", "-retry-cap", "100ms", "-retry-window", "1s", "-delivery-interval", "100ms",
		"-notify-timeout", notifyTimeout.String())
	silent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { holdUnanswered(r) }))
	t.Cleanup(silent.Close)
	inv := rr.freshInvoker(t)
	wantStatus(t, rr.as(t, inv).create(inv, serviceSecurity(silent.URL+"/cb", aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	start := time.Now()
	wantStatus(t, rr.as(t, aefA).revokeAll(inv), http.StatusNoContent)
	if d := time.Since(start); d > notifyTimeout+2*time.Second {
		t.Errorf("the revocation took %s with a silent destination", d)
	}
	rr.waitLog(t, `"msg":"notification dead-lettered"`, 1)
	if !strings.HasPrefix(rr.backend.name, "embedded") || testing.Short() {
		return // capif-admin on DynamoDB is tested in cmd/capif-admin
	}
	// An operator sees it and redrives it (the runner stopped: it locks the embedded store).
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	admin := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"run", "../capif-admin", "-store", "embedded", "-data", rr.dataDir}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("capif-admin %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := admin("outbox-list", "-dead")
	fields := strings.Fields(strings.Split(strings.TrimSpace(list), "\n")[1]) // the first record
	if len(fields) < 3 || fields[1] != "invoker" || fields[2] != "dead" || !strings.Contains(list, silent.URL[:strings.LastIndex(silent.URL, ":")]) {
		t.Fatalf("outbox-list -dead:\n%s", list)
	}
	if out := admin("outbox-redrive", fields[0]); !strings.Contains(out, "1 redriven") {
		t.Fatalf("outbox-redrive: %s", out)
	}
	if out := admin("outbox-list", "-dead"); strings.Contains(out, fields[0]) {
		t.Fatalf("still dead after redrive:\n%s", out)
	}
}

// logContains reports whether the runner's log holds s.
// countLog is how many times s occurs in the runner's log so far.
func (r *runner) countLog(s string) int { return strings.Count(r.logs.String(), s) }

// waitLog waits (30 s at most) until s occurs n times in the runner's log.
func (r *runner) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); r.countLog(s) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %s in the log after 30 s, want %d", r.countLog(s), s, n)
		}
	}
}
