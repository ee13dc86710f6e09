package security_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
)

// certOf mints a client certificate whose CN is id, and the caller that presents it.
func certOf(t *testing.T, ca *devpki.CA, id string, validFor time.Duration) (string, security.Caller) {
	t.Helper()
	issued, err := ca.Client(id, validFor)
	if err != nil {
		t.Fatal(err)
	}
	return string(issued.CertPEM), security.Caller{ID: id, CertKey: capif.CertificateKey(issued.TLS.Leaf)}
}

func newCA(t *testing.T) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// every operation of the API, as caller, on inv1's resources (or aef1's view of them).
func everyOperation(e *env, caller security.Caller) map[string]error {
	out := map[string]error{}
	if caller.ID == "inv1" {
		_, out["create"] = e.svc.CreateSecurityContext(ctx, caller, "inv1", standardRequest())
		_, out["update"] = e.svc.UpdateSecurityContext(ctx, caller, "inv1", standardRequest())
		_, out["token"] = e.svc.ObtainAuthorization(ctx, caller, "inv1", capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv1", ClientSecret: inv1Secret})
		out["authorize"] = e.svc.Authorize(ctx, security.ObtainSecurityMethod, caller, "inv1")
		return out
	}
	_, out["get"] = e.svc.GetInvokerInfo(ctx, caller, "inv1", security.InvokerInfoQuery{})
	out["delete"] = e.svc.RevokeAll(ctx, caller, "inv1")
	return out
}

// TestRevokedCertificate: a revoked certificate is refused on every operation (401; the token
// endpoint's invalid_client) with a WARN naming the certificate key; the principal's other
// certificate works; the revocation lapses a day after notAfter.
func TestRevokedCertificate(t *testing.T) {
	t.Parallel()
	e := newPushEnv(t)
	ca := newCA(t)
	for _, id := range []string{"inv1", "aef1"} {
		t.Run(id, func(t *testing.T) {
			leaked, bad := certOf(t, ca, id, 24*time.Hour)
			_, good := certOf(t, ca, id, 24*time.Hour)
			if _, _, err := e.svc.RevokeCertificate(ctx, id, leaked, false); err != nil {
				t.Fatal(err)
			}
			for op, err := range everyOperation(e, bad) {
				var se *security.Error
				if !errors.As(err, &se) || se.Kind != security.KindUnauthenticated || op == "token" && se.OAuthError != capif.InvalidClient {
					t.Errorf("%s with the revoked certificate: %v, want 401", op, err)
				}
			}
			if !strings.Contains(e.logs.String(), `"reason":"was revoked"`) || !strings.Contains(e.logs.String(), bad.CertKey) {
				t.Errorf("no WARN naming the reason and the certificate key:\n%s", e.logs.String())
			}
			for op, err := range everyOperation(e, good) {
				if err != nil && !errors.Is(err, security.ErrNotFound) {
					var se *security.Error
					if errors.As(err, &se) && se.Kind == security.KindUnauthenticated {
						t.Errorf("%s with the other certificate: %v", op, err)
					}
				}
			}
		})
	}
	// A day after notAfter the revocation lapses (the certificate fails verification anyway).
	leaked, bad := certOf(t, ca, "inv2", time.Hour)
	if _, _, err := e.svc.RevokeCertificate(ctx, "inv2", leaked, false); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Authorize(ctx, security.ObtainSecurityMethod, bad, "inv2"); err == nil {
		t.Fatal("revoked, yet authorized")
	}
	e.clock.Advance(time.Now().Add(time.Hour + security.RevokedCertificateRetention + time.Minute).Sub(e.clock.Now())) // the certificate's notAfter is real time
	if err := e.svc.Authorize(ctx, security.ObtainSecurityMethod, bad, "inv2"); err != nil {
		t.Errorf("after notAfter + 1 day: %v", err)
	}
	if l, err := e.svc.RevokedCertificates(ctx); err != nil || slices.ContainsFunc(l, func(c security.RevokedCertificate) bool { return c.PrincipalID == "inv2" }) {
		t.Errorf("the lapsed revocation is still listed: %+v, %v", l, err)
	}
}

// TestRevokeCertificatePushes: an invoker's certificate owes each AEF of its context with a
// root a push for all the invoker's apiIds there, UNEXPECTED_REASON; the context is unchanged
// and the invoker is not notified. An AEF's certificate: the item only. A dry run writes
// nothing; a CN that is not the id is refused.
func TestRevokeCertificatePushes(t *testing.T) {
	t.Parallel()
	e := newPushEnv(t)
	ca := newCA(t)
	before := entryTargets(e.stored("inv1"))
	leaked, caller := certOf(t, ca, "inv1", time.Hour)
	_, dry, err := e.svc.RevokeCertificate(ctx, "inv1", leaked, true)
	if err != nil || len(dry) != 2 || len(e.notifier.Sent()) != 0 || e.svc.Authorize(ctx, security.ObtainSecurityMethod, caller, "inv1") != nil {
		t.Fatalf("dry run: %d pushes, %v; sent %d", len(dry), err, len(e.notifier.Sent()))
	}
	if _, _, err := e.svc.RevokeCertificate(ctx, "inv1", leaked, false); err != nil {
		t.Fatal(err)
	}
	want := map[string][]capif.RevokeAuthorizationReq{
		pushAEF1: {push("aef1", capif.UnexpectedReason, "apiA", "apiB", "apiD")},
		pushAEF2: {push("aef2", capif.UnexpectedReason, "apiC", "apiD")},
	}
	if got := e.notifier.Pushes(t); dump(got) != dump(want) {
		t.Errorf("pushes %s, want %s", dump(got), dump(want))
	}
	if n := e.notifier.Revocations(t); len(n) != 0 {
		t.Errorf("the invoker was notified: %s", dump(n))
	}
	if got := entryTargets(e.stored("inv1")); !slices.Equal(got, before) {
		t.Errorf("the context changed: %v", got)
	}
	aefCert, _ := certOf(t, ca, "aef1", time.Hour)
	if _, pushes, err := e.svc.RevokeCertificate(ctx, "aef1", aefCert, false); err != nil || len(pushes) != 0 {
		t.Errorf("an AEF's certificate: %d pushes, %v", len(pushes), err)
	}
	other, _ := certOf(t, ca, "inv2", time.Hour)
	_, _, err = e.svc.RevokeCertificate(ctx, "inv1", other, false)
	wantError(t, err, security.KindInvalid, "")
	_, _, err = e.svc.RevokeCertificate(ctx, "inv1", "not a certificate", false)
	wantError(t, err, security.KindInvalid, "")
	// An offboarded invoker's certificate can still be revoked.
	gone, _ := certOf(t, ca, "inv-gone", time.Hour)
	if _, _, err := e.svc.RevokeCertificate(ctx, "inv-gone", gone, false); err != nil {
		t.Errorf("an id not registered: %v", err)
	}
}

// TestRevokeCertificateRace: an update the certificate makes between revoke-cert's read and its
// commit, adding an AEF to the context, still gets that AEF its push.
func TestRevokeCertificateRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.importAEFs(security.AEFRecord{AefID: "aef1", AefSecurityRoot: strp(rootAEF1 + "/")}, security.AEFRecord{AefID: "aef2", AefSecurityRoot: strp(rootAEF2)})
	e.create("inv1", request(entry("aef1", capif.PSK, capif.OAUTH)))
	ca := newCA(t)
	leaked, caller := certOf(t, ca, "inv1", time.Hour)
	e.hooks.AfterLoad = func() {
		if _, err := e.svc.UpdateSecurityContext(ctx, caller, "inv1", standardRequest()); err != nil {
			t.Errorf("the racing update: %v", err)
		}
	}
	_, pushes, err := e.svc.RevokeCertificate(ctx, "inv1", leaked, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]capif.RevokeAuthorizationReq{
		pushAEF1: {push("aef1", capif.UnexpectedReason, "apiA", "apiB", "apiD")},
		pushAEF2: {push("aef2", capif.UnexpectedReason, "apiC", "apiD")},
	}
	if got := e.notifier.Pushes(t); dump(got) != dump(want) || len(pushes) != 2 {
		t.Errorf("pushes %s (returned %d), want %s", dump(got), len(pushes), dump(want))
	}
}

// TestRevokedCertificateOutlivesTheRegistry: remove-invoker then re-adding the id, and import
// -prune, leave the revocation in force.
func TestRevokedCertificateOutlivesTheRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := newCA(t)
	leaked, bad := certOf(t, ca, "inv2", time.Hour)
	if _, _, err := e.svc.RevokeCertificate(ctx, "inv2", leaked, false); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RemoveInvoker(ctx, "inv2"); err != nil {
		t.Fatal(err)
	}
	doc := registryDoc()
	if err := e.svc.ImportRegistry(ctx, doc); err != nil {
		t.Fatal(err)
	}
	o, err := e.svc.OmittedBy(ctx, doc)
	if err != nil || e.svc.Prune(ctx, o) != nil {
		t.Fatal(err)
	}
	if err := e.svc.Authorize(ctx, security.ObtainSecurityMethod, bad, "inv2"); err == nil {
		t.Error("the revoked certificate works again after the id was removed and re-added")
	}
	exported, err := e.svc.ExportRegistry(ctx)
	if err != nil || strings.Contains(dump(exported), bad.CertKey) {
		t.Errorf("export carries the revocation: %v", err)
	}
}

// TestPinnedCertificates: with pins, any other certificate is refused; an import without
// certificates keeps them, [] removes them; export, import into an empty store, export gives the
// same document.
func TestPinnedCertificates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := newCA(t)
	pinnedPEM, pinned := certOf(t, ca, "inv2", time.Hour)
	_, other := certOf(t, ca, "inv2", time.Hour)
	pins := []string{pinnedPEM}
	if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv2", Certificates: &pins}}}); err != nil {
		t.Fatal(err)
	}
	authorized := func(c security.Caller) bool {
		return e.svc.Authorize(ctx, security.ObtainSecurityMethod, c, "inv2") == nil
	}
	if !authorized(pinned) || authorized(other) {
		t.Fatalf("pinned %v, other %v; want only the pinned one", authorized(pinned), authorized(other))
	}
	if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv2"}}}); err != nil {
		t.Fatal(err)
	}
	if authorized(other) {
		t.Error("an import without certificates dropped the pins")
	}
	first, err := e.svc.ExportRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh := newEnv(t)
	if err := fresh.svc.ImportRegistry(ctx, first); err != nil {
		t.Fatal(err)
	}
	second, err := fresh.svc.ExportRegistry(ctx)
	if err != nil || dump(first) != dump(second) || !strings.Contains(dump(second), "BEGIN CERTIFICATE") {
		t.Errorf("export, import, export differ (or lost the pins): %v", err)
	}
	empty := []string{}
	if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv2", Certificates: &empty}}}); err != nil {
		t.Fatal(err)
	}
	if !authorized(other) {
		t.Error("[] did not remove the pins")
	}
	bad := []string{"garbage"}
	if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv2", Certificates: &bad}}}); err == nil ||
		!strings.Contains(err.Error(), "apiInvokers[0].certificates[0]") {
		t.Errorf("a pin that is no certificate: %v", err)
	}
}

// TestRevokedCertificateReencoded: an ECDSA signature (r, s) verifies as (r, n−s) too, so
// anyone holding a leaked certificate can make a second encoding of it that chains to the CA
// and has another DER thumbprint. The revocation names the signed part, so that copy is refused
// as well.
func TestRevokedCertificateReencoded(t *testing.T) {
	t.Parallel()
	e := newPushEnv(t)
	ca := newCA(t)
	leaked, original := certOf(t, ca, "inv1", 24*time.Hour)
	twin := malleate(t, leaked)
	if _, err := twin.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the re-encoded certificate does not chain to the CA: %v", err)
	}
	block, _ := pem.Decode([]byte(leaked))
	if capif.CertThumbprint(twin.Raw) == capif.CertThumbprint(block.Bytes) {
		t.Fatal("the re-encoding did not change the DER")
	}
	caller := security.Caller{ID: "inv1", CertKey: capif.CertificateKey(twin)}
	if caller.CertKey != original.CertKey {
		t.Fatalf("CertificateKey differs between encodings: %s vs %s", caller.CertKey, original.CertKey)
	}
	if _, _, err := e.svc.RevokeCertificate(ctx, "inv1", leaked, false); err != nil {
		t.Fatal(err)
	}
	for op, err := range everyOperation(e, caller) {
		var se *security.Error
		if !errors.As(err, &se) || se.Kind != security.KindUnauthenticated {
			t.Errorf("%s with the re-encoded revoked certificate: %v, want 401", op, err)
		}
	}
}

// malleate returns certPEM with its ECDSA P-256 signature (r, s) replaced by (r, n−s).
func malleate(t *testing.T, certPEM string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	var cert struct {
		TBS       asn1.RawValue
		Algorithm asn1.RawValue
		Signature asn1.BitString
	}
	if _, err := asn1.Unmarshal(block.Bytes, &cert); err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(cert.Signature.Bytes, &sig); err != nil {
		t.Fatal(err)
	}
	sig.S = new(big.Int).Sub(elliptic.P256().Params().N, sig.S)
	sigDER, err := asn1.Marshal(sig)
	if err != nil {
		t.Fatal(err)
	}
	cert.Signature = asn1.BitString{Bytes: sigDER, BitLength: 8 * len(sigDER)}
	der, err := asn1.Marshal(cert)
	if err != nil {
		t.Fatal(err)
	}
	twin, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return twin
}
