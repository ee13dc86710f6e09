package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/internal/aeftest"
	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// pushRegistry: AEFs a and b with roots at aefs, one API each, four invokers notified at dest.
func pushRegistry(aefs *aeftest.Server, dest string) security.RegistryDoc {
	ra, rb := aefs.Root("a"), aefs.Root("b")
	doc := security.RegistryDoc{
		AEFs: []security.AEFRecord{{AefID: "aef-a", AefSecurityRoot: &ra}, {AefID: "aef-b", AefSecurityRoot: &rb}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIID: "api-a", APIName: "alpha", AefProfiles: []capif.AefProfile{{AefID: "aef-a", DomainName: "a.example.com"}}},
			{APIID: "api-b", APIName: "beta", AefProfiles: []capif.AefProfile{{AefID: "aef-b", DomainName: "b.example.com"}}},
		},
	}
	for _, id := range []string{"inv-1", "inv-2", "inv-3", "inv-4"} {
		doc.APIInvokers = append(doc.APIInvokers, security.InvokerRecord{APIInvokerID: id, NotificationDestination: dest})
	}
	return doc
}

// seedContexts gives each invoker a context with entries at both AEFs.
func seedContexts(t *testing.T, env map[string]string, dest string) {
	t.Helper()
	cfg, _, err := settings.Load(settings.Admin, nil, func(k string) string { return env[k] }, settings.Options{Name: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := fullapp.Open(context.Background(), app.Config{Settings: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, id := range []string{"inv-1", "inv-2", "inv-3", "inv-4"} {
		sc := &security.SecurityContext{APIInvokerID: id, NotificationDestination: dest}
		for _, api := range []struct{ aef, id, name string }{{"aef-a", "api-a", "alpha"}, {"aef-b", "api-b", "beta"}} {
			sc.Entries = append(sc.Entries, security.Entry{AefID: api.aef, APIID: api.id, SelSecurityMethod: capif.OAUTH, PrefSecurityMethods: []string{capif.OAUTH},
				Targets: []security.Target{{AefID: api.aef, APIID: api.id, APIName: api.name}}})
		}
		if err := a.Store.Create(context.Background(), sc); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdminRevocationsPush: remove-invoker, remove-api, import -prune and revoke push to each
// affected AEF with the CCF's certificate (the data directory's), checked against both YAMLs.
func TestAdminRevocationsPush(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		adminPushSteps(t, map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": t.TempDir()})
	})
	t.Run("dynamodb", func(t *testing.T) {
		testenv.DynamoDBEndpoint(t)
		var b [4]byte
		_, _ = rand.Read(b[:])
		adminPushSteps(t, map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": "push-" + hex.EncodeToString(b[:]) + "-",
			"CAPIF_CREATE_TABLES": "true", "CAPIF_DATA": t.TempDir(), "CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": "true"})
	})
}

func adminPushSteps(t *testing.T, env map[string]string) {
	aefs := aeftest.Start(t)
	env["CAPIF_AEF_CA"] = aefs.CAFile
	ca, err := devpki.LoadOrCreateCA(env["CAPIF_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	aefs.TrustClients(ca.Pool())
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer dest.Close()
	doc := pushRegistry(aefs, dest.URL+"/n")
	docFile := filepath.Join(t.TempDir(), "registry.json")
	write := func(d security.RegistryDoc) {
		raw, _ := json.Marshal(d)
		if err := os.WriteFile(docFile, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(doc)
	run := func(args ...string) string {
		t.Helper()
		out, err := adminEnv(t, env, args...)
		if err != nil {
			t.Fatalf("capif-admin %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("import", "-f", docFile)
	seedContexts(t, env, dest.URL+"/n")
	if out := run("list"); !strings.Contains(out, aefs.Root("a")+"/aef-security/v1/revoke-authorization") {
		t.Errorf("list does not say where aef-a's revocations go:\n%s", out)
	}
	pushed := func(aef string, n int) aeftest.Push {
		t.Helper()
		got := aefs.Wait(t, aef, n, 10*time.Second)
		if len(got) != n {
			t.Fatalf("%s received %d pushes, want %d: %v", aef, len(got), n, got)
		}
		p := got[n-1]
		if p.CN != security.DefaultCCFName || p.Req.SupportedFeatures != "0" {
			t.Errorf("push %s", p)
		}
		return p
	}
	info := func(p aeftest.Push) string {
		i := p.Req.RevokeInfo
		return i.APIInvokerID + " " + i.AefID + " " + strings.Join(i.APIIDs, ",") + " " + i.Cause
	}

	run("remove-invoker", "inv-1")
	if a, b := pushed("a", 1), pushed("b", 1); info(a) != "inv-1 aef-a api-a UNEXPECTED_REASON" || info(b) != "inv-1 aef-b api-b UNEXPECTED_REASON" {
		t.Errorf("remove-invoker pushed %q and %q", info(a), info(b))
	}
	run("remove-api", "api-b") // inv-2, inv-3, inv-4 each lose api-b
	got := aefs.Wait(t, "b", 4, 10*time.Second)
	var invs []string
	for _, p := range got[1:] {
		invs = append(invs, p.Req.RevokeInfo.APIInvokerID)
	}
	slices.Sort(invs)
	if !slices.Equal(invs, []string{"inv-2", "inv-3", "inv-4"}) {
		t.Errorf("remove-api pushed for %v", invs)
	}

	dry := run("-dry-run", "revoke", "-invoker", "inv-4", "-aef", "aef-a", "-cause", "AUTHORIZATION_ISSUE")
	if !strings.Contains(dry, "would revoke api-a at aef-a") || !strings.Contains(dry, "push to AEF aef-a") || len(aefs.Pushes("a")) != 1 {
		t.Errorf("revoke -dry-run:\n%s\npushes at a: %d", dry, len(aefs.Pushes("a")))
	}
	out := run("revoke", "-invoker", "inv-4", "-aef", "aef-a", "-cause", "AUTHORIZATION_ISSUE")
	if p := pushed("a", 2); info(p) != "inv-4 aef-a api-a AUTHORIZATION_ISSUE" || !strings.Contains(out, "revoked api-a at aef-a") {
		t.Errorf("revoke pushed %q; printed\n%s", info(p), out)
	}
	for _, bad := range [][]string{
		{"revoke", "-invoker", "inv-4", "-cause", "AUTHORIZATION_ISSUE"}, // nothing left
		{"revoke", "-invoker", "inv-3", "-cause", "BORED"},
		{"revoke", "-invoker", "inv-3"},
	} {
		if out, err := adminEnv(t, env, bad...); err == nil {
			t.Errorf("capif-admin %v succeeded:\n%s", bad, out)
		}
	}

	// import -prune of a document without api-a: inv-2 and inv-3 lose it, pushed to aef-a.
	doc.ServiceAPIs = doc.ServiceAPIs[1:]
	write(doc)
	run("import", "-prune", "-f", docFile)
	pushed("a", 4)
	var pruned []string
	for _, p := range aefs.Pushes("a")[2:] {
		pruned = append(pruned, info(p))
	}
	slices.Sort(pruned)
	if !slices.Equal(pruned, []string{"inv-2 aef-a api-a UNEXPECTED_REASON", "inv-3 aef-a api-a UNEXPECTED_REASON"}) {
		t.Errorf("import -prune pushed %q", pruned)
	}
	if out := run("outbox-list"); strings.Count(strings.TrimSpace(out), "\n") > 1 {
		t.Errorf("undelivered records:\n%s", out)
	}
}

// TestAdminWithoutCCFCertificate: capif-admin on DynamoDB without the CCF's certificate writes
// the pushes and leaves them to the worker, and says so.
func TestAdminWithoutCCFCertificate(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	aefs := aeftest.Start(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	env := map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": "nocert-" + hex.EncodeToString(b[:]) + "-", "CAPIF_CREATE_TABLES": "true",
		"CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": "true"}
	seedPushRegistry(t, env, aefs)
	out, err := adminEnv(t, env, "revoke", "-invoker", "inv-1", "-cause", "OTHER_REASON")
	if err != nil || !strings.Contains(out, "the delivery worker makes them") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if n := len(aefs.Pushes("")); n != 0 {
		t.Errorf("pushed %d times without a certificate", n)
	}
	out, err = adminEnv(t, env, "outbox-list")
	if err != nil || strings.Count(out, " aef ") != 2 || strings.Contains(out, " invoker ") {
		t.Errorf("outbox-list: want the two pushes pending (the invoker's notifications delivered):\n%s", out)
	}
}

// TestAdminCCFCSRAndKMSPush: ccf-csr writes a request signed by the KMS key (CN the CCF's name,
// clientAuth); a certificate issued from it, with the key in KMS, is what capif-admin pushes
// with (-ccf-cert, -ccf-kms-key).
func TestAdminCCFCSRAndKMSPush(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	testenv.KMSEndpoint(t)
	ctx := context.Background()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key, err := awskms.NewFromConfig(awsCfg).CreateKey(ctx, &awskms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	keyID := aws.ToString(key.KeyMetadata.KeyId)
	var b [4]byte
	_, _ = rand.Read(b[:])
	env := map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": "csr-" + hex.EncodeToString(b[:]) + "-", "CAPIF_CREATE_TABLES": "true",
		"CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": "true", "CAPIF_CCF_NAME": "ccf-eu-1"}
	csrFile := filepath.Join(t.TempDir(), "ccf.csr")
	if out, err := adminEnv(t, env, "ccf-csr", "-ccf-kms-key", keyID, "-o", csrFile); err != nil {
		t.Fatalf("ccf-csr: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(csrFile)
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("ccf-csr wrote %q", raw)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil || csr.Subject.CommonName != "ccf-eu-1" {
		t.Fatalf("the request: %v, CN %q", err, csr.Subject.CommonName)
	}
	pub, err := awskms.NewFromConfig(awsCfg).GetPublicKey(ctx, &awskms.GetPublicKeyInput{KeyId: &keyID})
	if err != nil {
		t.Fatal(err)
	}
	if der, _ := x509.MarshalPKIXPublicKey(csr.PublicKey); !bytes.Equal(der, pub.PublicKey) {
		t.Error("the request does not carry the KMS key's public key")
	}
	clientAuth := false
	for _, ext := range csr.Extensions {
		clientAuth = clientAuth || ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37})
	}
	if !clientAuth {
		t.Error("the request asks for no extended key usage")
	}

	// The operator's CCF CA issues the certificate; capif-admin pushes with it.
	ccfCA, err := devpki.NewCA("operator's CCF CA")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ccfCA.Cert, csr.PublicKey, ccfCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "ccf.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	aefs := aeftest.Start(t)
	aefs.TrustClients(ccfCA.Pool())
	seedPushRegistry(t, env, aefs)
	env["CAPIF_CCF_CERT_FILE"], env["CAPIF_CCF_KMS_KEY"], env["CAPIF_AEF_CA"] = certFile, keyID, aefs.CAFile
	if out, err := adminEnv(t, env, "revoke", "-invoker", "inv-2", "-aef", "aef-b", "-cause", "OTHER_REASON"); err != nil || strings.Contains(out, "worker makes them") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if got := aefs.Wait(t, "b", 1, 10*time.Second); got[0].CN != "ccf-eu-1" || got[0].Req.RevokeInfo.APIInvokerID != "inv-2" {
		t.Errorf("pushed %s", got[0])
	}
}

// seedPushRegistry imports pushRegistry through capif-admin and seeds the four contexts; the
// invokers' notifications go to a listener that accepts them.
func seedPushRegistry(t *testing.T, env map[string]string, aefs *aeftest.Server) {
	t.Helper()
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(dest.Close)
	raw, _ := json.Marshal(pushRegistry(aefs, dest.URL+"/n"))
	docFile := filepath.Join(t.TempDir(), "registry.json")
	if err := os.WriteFile(docFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := adminEnv(t, env, "import", "-f", docFile); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	seedContexts(t, env, dest.URL+"/n")
}

// TestAdminRevokeCert: revoke-cert refuses a certificate whose CN is not -id (nothing written),
// says what it would do with -dry-run, and list shows the revocation and the pins.
func TestAdminRevokeCert(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": dir}
	ca, err := devpki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := ca.Client("inv-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pins := []string{string(pinned.CertPEM)}
	doc := security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv-1", Certificates: &pins}, {APIInvokerID: "inv-2"}}}
	raw, _ := json.Marshal(doc)
	docFile := filepath.Join(t.TempDir(), "registry.json")
	if err := os.WriteFile(docFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := adminEnv(t, env, "import", "-f", docFile); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	leaked, err := ca.Client("inv-2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "leaked.pem")
	if err := os.WriteFile(certFile, leaked.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	thumb := capif.CertificateKey(leaked.TLS.Leaf)
	if out, err := adminEnv(t, env, "revoke-cert", "-id", "inv-1", "-cert", certFile); err == nil || !strings.Contains(out+err.Error(), "Subject CN") {
		t.Errorf("a certificate of inv-2 revoked as inv-1's: %v\n%s", err, out)
	}
	if out, err := adminEnv(t, env, "-dry-run", "revoke-cert", "-id", "inv-2", "-cert", certFile); err != nil || !strings.Contains(out, "would revoke certificate "+thumb) {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	out, err := adminEnv(t, env, "list")
	if err != nil || strings.Contains(out, thumb) || !strings.Contains(out, capif.CertificateKey(pinned.TLS.Leaf)+"  inv-1") {
		t.Errorf("list before revoking (want the pin, no revocation): %v\n%s", err, out)
	}
	if out, err := adminEnv(t, env, "revoke-cert", "-id", "inv-2", "-cert", certFile); err != nil {
		t.Fatalf("revoke-cert: %v\n%s", err, out)
	}
	if out, err := adminEnv(t, env, "list"); err != nil || !strings.Contains(out, thumb+"  inv-2") {
		t.Errorf("list after revoking: %v\n%s", err, out)
	}
	if out, err := adminEnv(t, env, "export"); err != nil || strings.Contains(out, thumb) || !strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("export: the pins, never the revocation: %v\n%s", err, out)
	}
}
