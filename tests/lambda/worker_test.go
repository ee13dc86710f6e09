package lambda

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/aeftest"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
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
		if w.cmd != settings.Worker {
			continue // the rotation function: TestRuntimeUnderEmulator/rotation
		}
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
			// The AEF's push, with the CCF's certificate from `capif-admin ccf-csr` and its key
			// in local-kms.
			ccf := ccfFromCSR(t)
			aefs := aeftest.Start(t)
			aefs.TrustClients(ccf.ca.Pool())
			seeded := seedOwed(t, ds, listener.URL+"/notifications", aefs.Root("aef-1"))

			env := functionEnv(t, w.logicalID, ds)
			env["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "true" // the listener is on this host
			env["CAPIF_CCF_KMS_KEY"], env["CAPIF_CCF_CERT_FILE"], env["CAPIF_CCF_CERT_URI"], env["CAPIF_CCF_CERT_VERSION"] = ccf.keyID, ccf.certFile, "", ""
			env["CAPIF_AEF_CA"], env["CAPIF_AEF_CA_VERSION"] = aefs.CAFile, ""
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
			if rep.Claimed != 2 || rep.Delivered != 2 || rep.Retried != 0 || rep.DeadLettered != 0 {
				t.Errorf("report %+v, want the two seeded records claimed and delivered", rep)
			}
			if p := aefs.Pushes("aef-1"); len(p) != 1 || p[0].CN != security.DefaultCCFName || p[0].Req.RevokeInfo.AefID != "aef-1" {
				t.Errorf("the AEF received %v, want one push from the CCF", p)
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
				if got[metrics.NotificationsDelivered] != 2 || got[metrics.NotificationsRetried] != 0 || got[metrics.NotificationsDeadLettered] != 0 ||
					got[metrics.OutboxPendingAEF] != 0 || got[metrics.OutboxPendingInvoker] != 0 || got[metrics.OutboxDeadLetters] != 0 {
					t.Errorf("the run line publishes %v, want NotificationsDelivered 2 and an empty outbox\n%s", got, b)
				}
				if d := got[metrics.CcfCertificateDaysLeft]; d < 89 || d > 90 {
					t.Errorf("CcfCertificateDaysLeft %v, want the 90 days of the certificate", d)
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

// ccfFromCSR is the CCF's certificate as an operator makes it: `capif-admin ccf-csr` with a
// local-kms key, the request signed by a CCF CA.
func ccfFromCSR(t *testing.T) (out struct {
	keyID, certFile string
	ca              *devpki.CA
}) {
	t.Helper()
	id := newCCFIdentity(t) // its key; its certificate is made again, from the request
	out.keyID, out.ca = id.keyID, id.ca
	csrFile := filepath.Join(t.TempDir(), "ccf.csr")
	cmd := exec.Command("go", "run", "./cmd/capif-admin", "ccf-csr", "-ccf-kms-key", id.keyID, "-o", csrFile)
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("capif-admin ccf-csr: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("ccf-csr wrote %q", raw)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("the request: %v", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, id.ca.Cert, csr.PublicKey, id.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	out.certFile = filepath.Join(t.TempDir(), "ccf.pem")
	if err := os.WriteFile(out.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}
