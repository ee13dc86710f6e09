package lambda

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
)

// The fifth bootstrap under the Runtime Interface Emulator, with the environment template.yaml
// gives it (and its Timeout) pointed at DynamoDB Local: its events/ file starts a run that
// delivers a pending record of the outbox to the invoker's listener, with the notification's id
// in the webhook-id header, and clears it; the run's log line is EMF that counts the delivery.
func TestWorkerUnderEmulator(t *testing.T) {
	rieBinary(t)
	ds := newDataset(t)
	bs := hostBootstraps(t)
	tp := loadTemplate(t)
	for _, w := range workers {
		t.Run(w.logicalID, func(t *testing.T) {
			var mu sync.Mutex
			var ids []string
			var bodies []string
			listener := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				ids, bodies = append(ids, r.Header.Get(notify.HeaderID)), append(bodies, string(b))
				mu.Unlock()
				rw.WriteHeader(http.StatusNoContent)
			}))
			defer listener.Close()
			seeded := seedOwed(t, ds, listener.URL+"/notifications")

			env := functionEnv(t, w.logicalID, ds)
			env["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "true" // the listener is on this host
			timeout := tp.functionProps(tp.resources("AWS::Serverless::Function")[w.logicalID])["Timeout"].(int)
			env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(timeout)
			e := startEmulated(t, w.logicalID, bs[w.logicalID], env)
			payload, err := os.ReadFile(filepath.Join(eventsDir(), w.event))
			if err != nil {
				t.Fatal(err)
			}
			body := e.invokeRaw(t, payload)
			var rep security.DeliveryReport
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rep); err != nil {
				t.Fatalf("not a delivery report (a function error?): %s", body)
			}
			if rep.Claimed != 1 || rep.Delivered != 1 || rep.Retried != 0 || rep.DeadLettered != 0 {
				t.Errorf("report %+v, want the one seeded record claimed and delivered", rep)
			}
			mu.Lock()
			if len(ids) != 1 || ids[0] != seeded {
				t.Errorf("the listener saw webhook-id %q, want exactly [%s]", ids, seeded)
			}
			if len(bodies) == 1 {
				var n map[string]any
				if err := json.Unmarshal([]byte(bodies[0]), &n); err != nil || n["cause"] != "OVERLIMIT_USAGE" || n["aefId"] != "aef-1" {
					t.Errorf("the listener got %s, want the SecurityNotification", bodies[0])
				}
			}
			mu.Unlock()
			if owed := pendingOwed(t, ds); len(owed) != 0 {
				t.Errorf("the outbox still holds %+v", owed)
			}

			// The run's one line is EMF in the template's namespace with the run's outcomes.
			runs := 0
			for _, l := range e.jsonLogLines(t) {
				if l["msg"] != "delivery run" {
					continue
				}
				runs++
				b, _ := json.Marshal(l)
				ps, err := emftest.Parse(b)
				if err != nil {
					t.Errorf("the run line is not valid EMF: %v\n%s", err, b)
					continue
				}
				got := map[string]float64{}
				for _, p := range ps {
					if p.Namespace != sampleRefs["MetricsNamespace"] {
						t.Errorf("publishes %s/%s", p.Namespace, p.Name)
					}
					if v, seen := got[p.Name]; seen && v != p.Value {
						t.Errorf("%s is %v and %v in one line", p.Name, v, p.Value)
					}
					got[p.Name] = p.Value
				}
				if got[metrics.NotificationsDelivered] != 1 || got[metrics.NotificationsRetried] != 0 || got[metrics.NotificationsDeadLettered] != 0 {
					t.Errorf("the run line publishes %v, want NotificationsDelivered 1\n%s", got, b)
				}
			}
			if runs != 1 {
				t.Errorf("%d \"delivery run\" lines, want 1:\n%s", runs, e.logs())
			}
			cold, _ := e.timings()
			initMS, durs := e.reports()
			t.Logf("%s: run %.1f ms (emulator: init %.2f ms, duration %.2f ms)", w.logicalID, ms(cold), initMS, first(durs))
		})
	}
}
