package security_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// FuzzRegistryDoc: any JSON document. No panic; whatever Validate accepts is storable: it imports
// into an embedded store (only a role clash with an earlier input may refuse it).
func FuzzRegistryDoc(f *testing.F) {
	f.Add([]byte(`{"apiInvokers":[{"apiInvokerId":"inv-1","onboardingSecret":"s"}],"aefs":[{"aefId":"aef-1"}],"serviceApis":[{"apiId":"api-1","apiName":"alpha","aefProfiles":[{"aefId":"aef-1","interfaceDescriptions":[{"fqdn":"a.example.com","port":443}]}]}]}`))
	f.Add([]byte(`{"aefs":[{"aefId":"x"}],"serviceApis":[{"apiId":"a","apiName":"n","aefProfiles":[{"aefId":"x","domainName":"d.example.com","securityMethods":["PKI"]}]}]}`))
	f.Add([]byte(`{"apiInvokers":[{"apiInvokerId":"a"}],"aefs":[{"aefId":"a"}]}`))
	f.Add([]byte(`{"serviceApis":[{"apiId":"` + strings.Repeat("x", 300) + `"}]}`))
	db, err := embedded.Open(filepath.Join(f.TempDir(), "capif.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = db.Close() })
	svc := security.New(db, db, nil, nil, nil, security.Config{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var doc security.RegistryDoc
		if json.Unmarshal(raw, &doc) != nil || doc.Validate() != nil {
			return
		}
		if err := svc.ImportRegistry(ctx, doc); err != nil && !errors.Is(err, security.ErrRoleClash) {
			t.Fatalf("a valid document was not storable: %v", err)
		}
	})
}
