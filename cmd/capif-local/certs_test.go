package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// TestRevokedCertificateOnTheRunner: capif-admin revoke-cert (the runner stopped, as on the
// embedded store it must be), then a restart that re-imports the registry, as make run does:
// the revoked certificate gets 401 on every route, with a WARN naming it; the invoker's other
// certificate still works.
func TestRevokedCertificateOnTheRunner(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds capif-admin")
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			regPath := filepath.Join(dir, "registry.json")
			raw, _ := json.Marshal(testRegistry())
			if err := os.WriteFile(regPath, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			r := startRunner(t, b)
			inv := r.freshInvoker(t)
			leaked, err := r.ca.Client(inv, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			certFile := filepath.Join(dir, "leaked.pem")
			if err := os.WriteFile(certFile, leaked.CertPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			r.certs.Store(inv, leaked.TLS)
			wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			args := []string{"run", "../capif-admin", "-data", r.dataDir}
			for i := 0; i+1 < len(r.baseArgs); i++ { // the back end of the runner's flags
				if f := r.baseArgs[i]; f == "-store" || f == "-table-prefix" {
					args = append(args, f, r.baseArgs[i+1])
				}
			}
			args = append(args, "revoke-cert", "-id", inv, "-cert", certFile)
			cmd := exec.Command("go", args...)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "revoked certificate "+capif.CertificateKey(leaked.TLS.Leaf)) {
				t.Fatalf("capif-admin revoke-cert: %v\n%s", err, out)
			}
			r2 := r.restart(t, "-registry", regPath)
			r2.certs.Store(inv, leaked.TLS)
			c := r2.as(t, inv)
			for name, resp := range map[string]response{
				"PUT":    c.create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))),
				"update": c.update(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))),
				"GET":    c.get(inv, ""),
				"DELETE": c.revokeAll(inv),
				"delete": c.revoke(inv, capif.SecurityNotification{APIInvokerID: inv, APIIDs: []string{apiA1}, Cause: capif.OverlimitUsage}),
				"token":  c.tokenReq(inv, grant(inv)),
			} {
				if resp.status != http.StatusUnauthorized {
					t.Errorf("%s with the revoked certificate: %d, want 401", name, resp.status)
				}
			}
			r2.waitLog(t, `"msg":"client certificate refused","reason":"was revoked"`, 6)
			// The invoker's other certificate still works.
			other, err := r2.ca.Client(inv, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			r2.certs.Store(inv, other.TLS)
			wantStatus(t, r2.as(t, inv).tokenReq(inv, grant(inv)), http.StatusOK)
		})
	}
}
