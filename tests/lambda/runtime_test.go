package lambda

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
	"github.com/capifcore/capif-security/shared/security"
)

// The built bootstraps under the Runtime Interface Emulator, one emulator per function, with the
// environment template.yaml gives them (table names, key id, apiRoot …) pointed at DynamoDB Local
// and local-kms: every events/ file gets its expected answer, then the whole life of a security
// context runs through the four emulated functions, and the logs are JSON without secrets.
func TestRuntimeUnderEmulator(t *testing.T) {
	rieBinary(t)
	ds := newDataset(t)
	bs := hostBootstraps(t)
	emus := map[string]*emulated{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, f := range functions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := functionEnv(t, f.logicalID, ds)
			// The emulated functions run on this host, like the local runner: the flow's stand-in
			// invoker listens on loopback.
			env["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "true"
			if f.signs {
				env["CAPIF_KEYSET_REFRESH"] = "1ms" // the rotation below reaches it at once
			}
			e := startEmulated(t, f.logicalID, bs[f.logicalID], env)
			mu.Lock()
			emus[f.logicalID] = e
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	invoke := func(t *testing.T, fn string, payload []byte) events.APIGatewayProxyResponse {
		t.Helper()
		return emus[fn].invoke(t, payload)
	}

	t.Run("events", func(t *testing.T) { runEventCases(t, invoke) })
	var secrets flowSecrets
	t.Run("flow", func(t *testing.T) { secrets = runFlow(t, invoke, "http://127.0.0.1:9091/notifications") })

	// kms-envelope (the template's sample): the rotation bootstrap records the deployment's KMS
	// key and publishes a wrapped one; handed over, the token bootstrap unwraps it and signs.
	t.Run("rotation", func(t *testing.T) {
		w, _ := workerByID("RotateSigningKeysFunction")
		env := functionEnv(t, w.logicalID, ds)
		rot := startEmulated(t, w.logicalID, bs[w.logicalID], env)
		payload, err := os.ReadFile(filepath.Join(eventsDir(), w.event))
		if err != nil {
			t.Fatal(err)
		}
		var rep lambdaapp.RotationReport
		dec := json.NewDecoder(bytes.NewReader(rot.invokeRaw(t, payload)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("not a rotation report (a function error?): %v\n%s", err, rot.logs())
		}
		windows := security.KeyWindows{Refresh: time.Minute, JWKSMaxAge: capif.JWKSMaxAge, TokenLifetime: 10 * time.Minute}
		handOver(t, ds, rep, windows, []string{ds.keyID}, func(t *testing.T) string {
			return runFlow(t, invoke, "http://127.0.0.1:9091/notifications").token
		})
		if l := emus["ObtainAuthorizationFunction"].logs(); strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			t.Errorf("the token function warned:\n%s", l)
		}
	})

	t.Run("revoked certificate", func(t *testing.T) {
		thumb := runRevokedCertificate(t, ds, invoke)
		for _, f := range functions {
			if l := emus[f.logicalID].logs(); !strings.Contains(l, `"msg":"client certificate refused"`) || !strings.Contains(l, thumb) {
				t.Errorf("%s logged no WARN naming the revoked certificate %s", f.logicalID, thumb)
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		devCA, _ := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", "ca.pem"))
		never := map[string]string{"a certificate": "BEGIN CERTIFICATE", "the onboarding secret": "dev-secret-invoker-2",
			"the dev CA": strings.Split(string(devCA), "\n")[1]}
		if secrets.token != "" {
			never["the access token"] = secrets.token
			never["the token's signature"] = secrets.token[strings.LastIndex(secrets.token, ".")+1:]
		}
		if secrets.psk != "" {
			never["the PSK"] = secrets.psk
		}
		for _, f := range functions {
			e := emus[f.logicalID]
			lines := e.jsonLogLines(t)
			requests := 0
			for _, l := range lines {
				if l["msg"] != "request" {
					continue
				}
				requests++
				// The real bootstrap's access lines are EMF that CloudWatch accepts, in the
				// template's namespace, naming only metrics of shared/metrics.
				b, _ := json.Marshal(l)
				ps, err := emftest.Parse(b)
				if err != nil {
					t.Errorf("%s: access line is not valid EMF: %v\n%s", f.logicalID, err, b)
					continue
				}
				for _, p := range ps {
					if p.Namespace != sampleRefs["MetricsNamespace"] || !slices.Contains(metrics.Names, p.Name) {
						t.Errorf("%s: publishes %s/%s", f.logicalID, p.Namespace, p.Name)
					}
				}
			}
			if requests == 0 {
				t.Errorf("%s: no access log line", f.logicalID)
			}
			logs := e.logs()
			for what, s := range never {
				if strings.Contains(logs, s) {
					t.Errorf("%s logged %s", f.logicalID, what)
				}
			}
		}
	})

	// Figures: cold = the first invoke (process start, init, wiring with the first AWS calls),
	// warm = the median of the others; Init/Duration as the emulator reports them.
	for _, f := range functions {
		e := emus[f.logicalID]
		cold, warm := e.timings()
		initMS, durs := e.reports()
		t.Logf("%-30s cold %6.1f ms  warm median %5.1f ms  (emulator: init %.2f ms, first duration %.2f ms, %d invokes)",
			f.logicalID, ms(cold), ms(warm), initMS, first(durs), len(durs))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func first(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// A DynamoDB that never answers: the function still answers 503 problem+json before the Lambda
// deadline (timeout 3 s, margin 1 s), instead of being killed by a timeout (API Gateway: 502).
func TestRuntimeDeadlineUnderEmulator(t *testing.T) {
	rieBinary(t)
	ds := newDataset(t)
	bs := hostBootstraps(t)
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	env := functionEnv(t, "ObtainApiInvokerInfoFunction", ds)
	env["AWS_ENDPOINT_URL_DYNAMODB"] = "http://" + hole.Addr().String()
	env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = "3"
	env["CAPIF_DEADLINE_MARGIN"] = "1s"
	e := startEmulated(t, "ObtainApiInvokerInfoFunction", bs["ObtainApiInvokerInfoFunction"], env)
	payload, err := os.ReadFile(filepath.Join(eventsDir(), "obtain-invoker-info", "get.json"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp := e.invoke(t, payload)
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || header1(resp, "Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q: %s", resp.StatusCode, header1(resp, "Retry-After"), resp.Body)
	}
	checkShape(t, "deadline", resp)
	if took > 2900*time.Millisecond {
		t.Errorf("answered after %v: too close to the 3 s timeout", took)
	}
	t.Logf("503 after %v (timeout 3 s, margin 1 s)", took)
}

// runRevokedCertificate revokes invoker-1's certificate in the data set (as capif-admin
// revoke-cert does) and sends a request with it to every function: each answers 401 and logs
// the WARN naming the certificate's key.
func runRevokedCertificate(t *testing.T, ds dataset, invoke invoker) string {
	pemText := devCert(t, "clients/invoker-1.pem")
	block, _ := pem.Decode([]byte(pemText))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	thumb := capif.CertificateKey(cert)
	if err := ds.store.Update(context.Background(), func(tx security.RegistryTx) error {
		return tx.PutRevokedCertificate(&security.RevokedCertificate{Key: thumb, PrincipalID: "invoker-1", NotAfter: cert.NotAfter})
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fn  string
		req apigwevent.Request
	}{
		{"ObtainSecurityMethodFunction", apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: putBody}},
		{"ObtainAuthorizationFunction", apigwevent.Request{Method: http.MethodPost, Resource: tokenRes, Params: map[string]string{"securityId": "invoker-1"},
			Header: formCT(), Body: "grant_type=client_credentials&client_id=invoker-1"}},
		{"ObtainApiInvokerInfoFunction", apigwevent.Request{Method: http.MethodGet, Resource: invokerRes, Params: id("invoker-1")}},
		{"RevokeAuthorizationFunction", apigwevent.Request{Method: http.MethodDelete, Resource: invokerRes, Params: id("invoker-1")}},
	} {
		c.req.ClientCertPEM, c.req.RequestID = pemText, "revoked-"+c.fn
		if resp := invoke(t, c.fn, eventBytes(t, c.req)); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with a revoked certificate: %d %s, want 401", c.fn, resp.StatusCode, resp.Body)
		}
	}
	return thumb
}
