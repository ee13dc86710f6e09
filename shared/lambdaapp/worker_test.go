package lambdaapp

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// The worker function delivers a due record to its destination, from a scheduled event, and
// reports what it did; a record delivered is gone.
func TestWorkerDeliversDueRecords(t *testing.T) {
	dir := t.TempDir()
	var hits atomic.Int32
	var gotID atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		gotID.Store(r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	// Seed the outbox as a revocation would have, then close the file for the function.
	db, err := embedded.Open(filepath.Join(dir, "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	svc := security.New(db, db, nil, nil, nil, security.Config{})
	if err := svc.ImportRegistry(context.Background(), security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv-1"}}}); err != nil {
		t.Fatal(err)
	}
	sc := &security.SecurityContext{APIInvokerID: "inv-1", NotificationDestination: srv.URL, Entries: []security.Entry{{AefID: "aef-1", SelSecurityMethod: capif.PKI, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI}, Targets: []security.Target{{AefID: "aef-1", APIID: "api-1", APIName: "a"}}}}}
	if err := db.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	sc.Entries = nil
	if err := db.Replace(context.Background(), sc, []security.Owed{{ID: "owed-1", APIInvokerID: "inv-1", Destination: srv.URL,
		Notification: capif.SecurityNotification{APIInvokerID: "inv-1", AefID: "aef-1", APIIDs: []string{"api-1"}, Cause: capif.UnexpectedReason}}}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	env := map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": dir, "CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": "true"}
	cfg, _, err := settings.Load(settings.Worker, nil, func(k string) string { return env[k] }, settings.Options{Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	w, err := NewWorker(context.Background(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Backends: fullapp.Backends})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	event, _ := json.Marshal(map[string]any{"id": "ev-1", "source": "aws.scheduler", "detail-type": "Scheduled Event"})
	rep, err := w.Handle(ctx, event)
	if err != nil || rep.Delivered != 1 || hits.Load() != 1 || gotID.Load() != "owed-1" {
		t.Fatalf("run: %+v, %v; %d deliveries with id %v", rep, err, hits.Load(), gotID.Load())
	}
	// The run line publishes the run's outcomes as CloudWatch metrics (EMF).
	var published []emftest.Published
	for _, line := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		if bytes.Contains(line, []byte(`"msg":"delivery run"`)) {
			if published, err = emftest.Parse(line); err != nil {
				t.Fatalf("run line is not valid EMF: %v\n%s", err, line)
			}
		}
	}
	if !slices.ContainsFunc(published, func(p emftest.Published) bool { return p.Name == metrics.NotificationsDelivered && p.Value == 1 }) {
		t.Errorf("run line publishes %+v, want NotificationsDelivered 1", published)
	}
	if p, _ := w.app.Store.Pending(context.Background()); len(p) != 0 {
		t.Errorf("outbox after delivery: %+v", p)
	}
	if rep, err := w.Handle(ctx, event); err != nil || rep.Claimed != 0 {
		t.Errorf("second run: %+v, %v", rep, err)
	}
}
