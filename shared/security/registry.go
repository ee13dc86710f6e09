package security

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/capifcore/capif-security/shared/capif"
)

// Validate checks a registry document on its own: ids present and unique, no id in both roles,
// names usable in the scope grammar, every API with an apiId and at least one profile of a listed
// AEF.
func (doc RegistryDoc) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	roles := map[string]Role{}
	claim := func(id string, r Role, where string) {
		switch {
		case id == "" || len(id) > MaxIDLength || !utf8.ValidString(id):
			bad("%s: id must be 1 to %d bytes of UTF-8", where, MaxIDLength)
		case strings.ContainsAny(id, capif.ScopeSeparators):
			bad("%s: id %q contains one of %q", where, id, capif.ScopeSeparators)
		case roles[id] == r:
			bad("%s: id %q is listed twice", where, id)
		case roles[id] != "":
			bad("%s: id %q is both an API invoker and an AEF", where, id)
		default:
			roles[id] = r
		}
	}
	pins := func(where string, certs *[]string) {
		if certs == nil {
			return
		}
		for j, pemText := range *certs {
			if _, err := certificateOf(pemText); err != nil {
				bad("%s.certificates[%d]: %s", where, j, err)
			}
		}
	}
	for i, inv := range doc.APIInvokers {
		where := fmt.Sprintf("apiInvokers[%d]", i)
		claim(inv.APIInvokerID, RoleInvoker, where)
		pins(where, inv.Certificates)
		switch h := inv.OnboardingSecretSHA256; {
		case h == "":
		case inv.OnboardingSecret != "":
			bad("%s: onboardingSecret and onboardingSecretSha256 exclude each other", where)
		case len(h) != 2*sha256.Size || strings.Trim(h, "0123456789abcdef") != "":
			bad("%s: onboardingSecretSha256 must be %d lowercase hex digits", where, 2*sha256.Size)
		}
	}
	for i, a := range doc.AEFs {
		claim(a.AefID, RoleAEF, fmt.Sprintf("aefs[%d]", i))
		pins(fmt.Sprintf("aefs[%d]", i), a.Certificates)
		if a.AefSecurityRoot != nil && *a.AefSecurityRoot != "" {
			if err := checkSecurityRoot(*a.AefSecurityRoot); err != nil {
				bad("aefs[%d]: aefSecurityRoot %s", i, err)
			}
		}
	}
	apis := map[string]bool{}
	for i, d := range doc.ServiceAPIs {
		where := fmt.Sprintf("serviceApis[%d]", i)
		switch {
		case d.APIID == "" || len(d.APIID) > MaxIDLength || !utf8.ValidString(d.APIID):
			bad("%s: apiId must be 1 to %d bytes of UTF-8", where, MaxIDLength)
		case apis[d.APIID]:
			bad("%s: apiId %q is listed twice", where, d.APIID)
		}
		apis[d.APIID] = true
		if d.APIName == "" || strings.ContainsAny(d.APIName, capif.ScopeSeparators) {
			bad("%s: apiName %q must be non-empty and free of %q", where, d.APIName, capif.ScopeSeparators)
		}
		if len(d.AefProfiles) == 0 {
			bad("%s: aefProfiles is empty", where)
		}
		for j, p := range d.AefProfiles {
			if roles[p.AefID] != RoleAEF {
				bad("%s.aefProfiles[%d]: aefId %q is not listed under aefs", where, j, p.AefID)
			}
			for k, ifc := range p.InterfaceDescriptions {
				for _, ip := range validateInterface(ifc, "") {
					bad("%s.aefProfiles[%d].interfaceDescriptions[%d]%s: %s", where, j, k, ip.Param, ip.Reason)
				}
			}
		}
	}
	if len(errs) > 0 {
		return errors.New("invalid registry: " + strings.Join(errs, "; "))
	}
	return nil
}

// checkSecurityRoot accepts an AEF's {apiRoot}: an absolute https URL naming a host, with no user
// information, query or fragment (the push's path is appended to it). Its errors never echo it.
func checkSecurityRoot(root string) error {
	u, err := url.Parse(root)
	switch {
	case err != nil:
		return errors.New("is not a valid URL")
	case u.Scheme != "https":
		return errors.New("must be an https URL")
	case u.Opaque != "" || u.Hostname() == "":
		return errors.New("names no host")
	case u.User != nil:
		return errors.New("must not carry user information")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("must not have a query")
	case u.Fragment != "" || strings.Contains(root, "#"):
		return errors.New("must not have a fragment")
	}
	return nil
}

// certificateOf parses one PEM certificate (a pin, a certificate to revoke); its errors never
// echo the input.
func certificateOf(pemText string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("must be one PEM CERTIFICATE")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, errors.New("is not an X.509 certificate")
	}
	return c, nil
}

// HashSecret is how onboarding secrets are kept: only their SHA-256. They are high-entropy
// credentials issued by the CCF, so a fast hash suffices and keeps token requests cheap.
func HashSecret(secret string) []byte {
	if secret == "" {
		return nil
	}
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// The registry rules. Each runs inside one Registry.Update, so a rule either applies entirely or
// not at all; they are the only code that keeps the AEF catalogues and the interface index in
// step with the published APIs.

// importDoc upserts doc (already validated). An id already held by the other role is refused
// with ErrRoleClash.
func importDoc(tx RegistryTx, doc RegistryDoc) error {
	if err := prefetchImport(tx, doc); err != nil {
		return err
	}
	put := func(p *Principal, certs *[]string) error {
		old, err := tx.GetPrincipal(p.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			old = &Principal{}
		case err != nil:
			return err
		case old.Role != p.Role:
			return fmt.Errorf("%w: %q is registered as %s", ErrRoleClash, p.ID, old.Role)
		}
		if p.SecretHash == nil {
			// An import that omits the onboarding secret keeps the one on record: a partial
			// document must never silently drop an invoker's client authentication.
			p.SecretHash = old.SecretHash
		}
		// Pins likewise: omitted keeps them, [] removes them.
		p.Certificates, p.CertificatePins = old.Certificates, old.CertificatePins
		if certs != nil {
			p.Certificates, p.CertificatePins = nil, nil
			for _, pemText := range *certs {
				c, _ := certificateOf(pemText) // checked by Validate
				p.Certificates = append(p.Certificates, pemText)
				p.CertificatePins = append(p.CertificatePins, capif.CertificateKey(c))
			}
		}
		return tx.PutPrincipal(p)
	}
	for _, inv := range doc.APIInvokers {
		hash := HashSecret(inv.OnboardingSecret)
		if inv.OnboardingSecretSHA256 != "" {
			hash, _ = hex.DecodeString(inv.OnboardingSecretSHA256) // checked by Validate
		}
		if err := put(&Principal{ID: inv.APIInvokerID, Role: RoleInvoker, SecretHash: hash,
			NotificationDestination: inv.NotificationDestination, APIInvokerInformation: inv.APIInvokerInformation}, inv.Certificates); err != nil {
			return err
		}
	}
	for _, a := range doc.AEFs {
		p := &Principal{ID: a.AefID, Role: RoleAEF}
		if a.AefSecurityRoot == nil {
			// Omitted keeps the root on record, as an omitted secret is kept.
			if old, err := tx.GetPrincipal(a.AefID); err == nil {
				p.AefSecurityRoot = old.AefSecurityRoot
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
		} else {
			p.AefSecurityRoot = strings.TrimSuffix(*a.AefSecurityRoot, "/")
		}
		if err := put(p, a.Certificates); err != nil {
			return err
		}
	}
	for i := range doc.ServiceAPIs {
		d := doc.ServiceAPIs[i]
		if err := unpublish(tx, d.APIID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		for _, p := range PublishedAPIs(d) {
			if err := publish(tx, p); err != nil {
				return err
			}
		}
		if err := tx.PutAPI(&d); err != nil {
			return err
		}
	}
	return nil
}

// prefetchImport names what importDoc will read, in two rounds: the records the document names,
// then what its APIs as previously published point at (known only once the first round is read).
func prefetchImport(tx RegistryTx, doc RegistryDoc) error {
	var first []RecordKey
	for _, inv := range doc.APIInvokers {
		first = append(first, RecordKey{RecordPrincipal, inv.APIInvokerID})
	}
	for _, a := range doc.AEFs {
		first = append(first, RecordKey{RecordPrincipal, a.AefID})
	}
	for _, d := range doc.ServiceAPIs {
		first = append(first, RecordKey{RecordAPI, d.APIID})
		first = append(first, occupied(d)...)
	}
	if err := tx.Prefetch(first); err != nil {
		return err
	}
	var second []RecordKey
	for _, d := range doc.ServiceAPIs {
		old, err := tx.GetAPI(d.APIID)
		switch {
		case err == nil:
			second = append(second, occupied(*old)...)
		case !errors.Is(err, ErrNotFound):
			return err
		}
	}
	return tx.Prefetch(second)
}

// occupied lists the records a published API occupies: its AEF catalogues and interfaces.
func occupied(d capif.ServiceAPIDescription) []RecordKey {
	var keys []RecordKey
	for _, p := range PublishedAPIs(d) {
		keys = append(keys, RecordKey{RecordAEF, p.AefID})
		for _, k := range InterfaceKeys(p) {
			keys = append(keys, RecordKey{RecordInterface, k})
		}
	}
	return keys
}

// removeAPI removes a published API from the catalogue and the interface index.
func removeAPI(tx RegistryTx, apiID string) error {
	if err := unpublish(tx, apiID); err != nil {
		return err
	}
	return tx.DeleteAPI(apiID)
}

// removeAEF deletes an AEF that publishes nothing any more; an AEF that still publishes APIs is
// refused so no catalogue or context is left pointing at a missing AEF.
func removeAEF(tx RegistryTx, aefID string) error {
	p, err := tx.GetPrincipal(aefID)
	if err != nil {
		return err
	}
	if p.Role != RoleAEF {
		return fmt.Errorf("%w: %q is an API invoker", ErrNotFound, aefID)
	}
	if a, err := tx.GetAEF(aefID); err == nil && len(a.APIs) > 0 {
		ids := make([]string, 0, len(a.APIs))
		for _, api := range a.APIs {
			ids = append(ids, api.APIID)
		}
		return fmt.Errorf("%w: AEF %q still publishes %s; remove those APIs first", ErrExists, aefID, strings.Join(ids, ", "))
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return tx.DeletePrincipal(aefID)
}

// removeInvoker offboards an invoker: its security context and its registry record go in the
// same change, so neither outlives the other.
func removeInvoker(tx RegistryTx, apiInvokerID string, owe func(*SecurityContext) ([]Owed, error)) error {
	p, err := tx.GetPrincipal(apiInvokerID)
	if err != nil {
		return err
	}
	if p.Role != RoleInvoker {
		return fmt.Errorf("%w: %q is an AEF", ErrNotFound, apiInvokerID)
	}
	if err := tx.DeleteContext(apiInvokerID, owe); err != nil {
		return err
	}
	return tx.DeletePrincipal(apiInvokerID)
}

func publish(tx RegistryTx, p PublishedAPI) error {
	a, err := tx.GetAEF(p.AefID)
	if errors.Is(err, ErrNotFound) {
		a, err = &AEF{AefID: p.AefID}, nil
	}
	if err != nil {
		return err
	}
	a.PutAPI(p)
	if err := tx.PutAEF(a); err != nil {
		return err
	}
	for key, narrowed := range InterfaceIndex([]PublishedAPI{p}) {
		list, err := tx.GetInterface(key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		list = append(withoutAPI(list, p.AefID, p.APIID), narrowed...)
		if err := tx.PutInterface(key, list); err != nil {
			return err
		}
	}
	return nil
}

func unpublish(tx RegistryTx, apiID string) error {
	old, err := tx.GetAPI(apiID)
	if err != nil {
		return err
	}
	if err := tx.Prefetch(occupied(*old)); err != nil {
		return err
	}
	for _, p := range PublishedAPIs(*old) {
		a, err := tx.GetAEF(p.AefID)
		if err == nil && a.RemoveAPI(apiID) {
			if err := tx.PutAEF(a); err != nil {
				return err
			}
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		for _, key := range InterfaceKeys(p) {
			list, err := tx.GetInterface(key)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := tx.PutInterface(key, withoutAPI(list, p.AefID, apiID)); err != nil {
				return err
			}
		}
	}
	return nil
}

func withoutAPI(list []PublishedAPI, aefID, apiID string) []PublishedAPI {
	return slices.DeleteFunc(slices.Clone(list), func(x PublishedAPI) bool { return x.AefID == aefID && x.APIID == apiID })
}
