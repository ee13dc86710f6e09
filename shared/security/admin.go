package security

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
)

// Admin operations on the registry. Each registry change is one Registry.Update running a rule
// of registry.go; those that also touch security contexts use the same conditional writes and
// outbox as the API operations.

// ImportRegistry validates and upserts a registry document.
func (s *Service) ImportRegistry(ctx context.Context, doc RegistryDoc) error {
	if err := doc.Validate(); err != nil {
		return err
	}
	if err := s.checkReserved(doc); err != nil {
		return err
	}
	return s.registry.Update(ctx, func(tx RegistryTx) error { return importDoc(tx, doc) })
}

// checkReserved refuses a document that names the CCF itself (DefaultCCFName or
// Config.CCFName) as an invoker or an AEF: a certificate with that name is the CCF's own client
// certificate, which must never authenticate a caller of the API.
func (s *Service) checkReserved(doc RegistryDoc) error {
	var ids []string
	for _, inv := range doc.APIInvokers {
		ids = append(ids, inv.APIInvokerID)
	}
	for _, a := range doc.AEFs {
		ids = append(ids, a.AefID)
	}
	for _, id := range ids {
		if id == DefaultCCFName || id == s.cfg.CCFName {
			return fmt.Errorf("invalid registry: id %q is reserved: it names the CCF's own client certificate (CAPIF_CCF_NAME)", id)
		}
	}
	return nil
}

// RemoveInvoker offboards an invoker: its security context and its registry record are deleted
// in one change.
//
// Per AEF of its context, the invoker is owed one SecurityNotification (cause
// UNEXPECTED_REASON) and the AEF its push, written in the deleting change and delivered like a
// revocation's.
func (s *Service) RemoveInvoker(ctx context.Context, apiInvokerID string) error {
	var owed []Owed
	// The AEFs' roots are read beside the change, not inside it: a principal read inside a
	// registry change becomes a condition of its commit, and enough of them would split it.
	principals := s.principalReader(ctx)
	err := s.registry.Update(ctx, func(tx RegistryTx) error {
		owed = nil // what an earlier, re-run attempt owed was never written
		return removeInvoker(tx, apiInvokerID, func(sc *SecurityContext) ([]Owed, error) {
			var err error
			_, owed, err = s.withdraw(sc, func(Target) bool { return true }, capif.UnexpectedReason, principals)
			return owed, err
		})
	})
	if err != nil {
		return err
	}
	s.deliver(ctx, owed)
	return nil
}

// withdraw removes the targets drop matches from sc and returns the context left and what the
// removal owes, per AEF (in aefId order): the invoker's notification with the apiIds removed
// there, and that AEF's push. principals reads the AEFs' registry records (their roots).
func (s *Service) withdraw(sc *SecurityContext, drop func(Target) bool, cause capif.Cause, principals func(ids []string) (map[string]*Principal, error)) (*SecurityContext, []Owed, error) {
	byAEF := map[string][]string{}
	left, _ := withoutTargets(sc, func(t Target) bool {
		if drop(t) {
			byAEF[t.AefID] = append(byAEF[t.AefID], t.APIID)
			return true
		}
		return false
	})
	if len(byAEF) == 0 {
		return left, nil, nil
	}
	aefs := sortedKeys(byAEF)
	found, err := principals(aefs)
	if err != nil {
		return nil, nil, err
	}
	var owed []Owed
	for _, aef := range aefs {
		p := found[aef]
		if p == nil || p.Role != RoleAEF {
			p = &Principal{ID: aef} // no longer registered: nowhere to push
		}
		ids := slices.Compact(slices.Sorted(slices.Values(byAEF[aef])))
		owed = append(owed, s.owe(left, p, ids, cause)...)
	}
	return left, owed, nil
}

// principalReader reads AEF principals through the store for admin revocations, each once per
// operation: the roots of an operation's AEFs are read once however many contexts it changes.
func (s *Service) principalReader(ctx context.Context) func(ids []string) (map[string]*Principal, error) {
	known := map[string]*Principal{}
	read := map[string]bool{}
	return func(ids []string) (map[string]*Principal, error) {
		var missing []string
		for _, id := range ids {
			if !read[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			snap, err := s.load(ctx, Query{Principals: missing})
			if err != nil {
				return nil, err
			}
			for _, id := range missing {
				read[id] = true
				if p := snap.Principals[id]; p != nil {
					known[id] = p
				}
			}
		}
		return known, nil
	}
}

// RemoveAEF deletes an AEF that no longer publishes any API.
func (s *Service) RemoveAEF(ctx context.Context, aefID string) error {
	return s.registry.Update(ctx, func(tx RegistryTx) error { return removeAEF(tx, aefID) })
}

// RemoveAPI withdraws a published API: it is revoked from every security context (per context
// and AEF, one notification and that AEF's push, cause UNEXPECTED_REASON), then removed from the
// catalogue. Re-running it completes a removal that was interrupted.
func (s *Service) RemoveAPI(ctx context.Context, apiID string) (revoked int, err error) {
	ids, err := s.store.ContextsWithAPI(ctx, apiID)
	if err != nil {
		return 0, err
	}
	// Every context's change commits on its own; what they owe is delivered together at the
	// end, DeliveryConcurrency at a time, also when a later context fails.
	var all []Owed
	defer func() { s.deliver(ctx, all) }()
	principals := s.principalReader(ctx)
	for _, id := range ids {
		owed, err := s.withdrawFrom(ctx, id, func(t Target) bool { return t.APIID == apiID }, capif.UnexpectedReason, principals, false)
		if err != nil {
			return revoked, fmt.Errorf("revoking %q from %q: %w", apiID, id, err)
		}
		if len(owed) > 0 {
			revoked++
			all = append(all, owed...)
		}
	}
	err = s.registry.Update(ctx, func(tx RegistryTx) error { return removeAPI(tx, apiID) })
	if errors.Is(err, ErrNotFound) && revoked > 0 {
		err = nil // an earlier, interrupted run already removed it from the catalogue
	}
	return revoked, err
}

// withdrawFrom removes the targets drop matches from the context of apiInvokerID in one
// conditional write with what that owes (see withdraw), and returns it; nothing when no target
// matches (or there is no context). dryRun computes it and writes nothing.
func (s *Service) withdrawFrom(ctx context.Context, apiInvokerID string, drop func(Target) bool, cause capif.Cause,
	principals func([]string) (map[string]*Principal, error), dryRun bool) ([]Owed, error) {
	var owed []Owed
	err := s.retryWrite(ctx, apiInvokerID, func() error {
		owed = nil // what an earlier, conflicting attempt owed was never written
		snap, err := s.load(ctx, Query{APIInvokerID: apiInvokerID})
		if err != nil || snap.Context == nil {
			return err
		}
		sc, o, err := s.withdraw(snap.Context, drop, cause, principals)
		if err != nil || len(o) == 0 {
			return err
		}
		owed = o
		if dryRun {
			return nil
		}
		return s.replace(ctx, sc, owed)
	})
	return owed, err
}

// CCFRevocation is a revocation the CCF makes on its own (TS 23.222 clause 8.23.4; capif-admin
// revoke): the entries of an invoker's context at one AEF or all, for some APIs or all.
type CCFRevocation struct {
	APIInvokerID string
	AefID        string   // "": every AEF
	APIIDs       []string // empty: every API
	Cause        capif.Cause
}

// RevokeByCCF removes what r names from the invoker's security context as an AEF's revocation
// would, owing per AEF the invoker's notification and the AEF's push, and returns those records
// (delivered inline like a revocation's). With dryRun it writes and delivers nothing and returns
// what it would owe. A cause outside capif.KnownCauses is refused (KindInvalid), and so is a
// revocation that matches no entry (KindNotFound).
func (s *Service) RevokeByCCF(ctx context.Context, r CCFRevocation, dryRun bool) ([]Owed, error) {
	if !slices.Contains(capif.KnownCauses, r.Cause) {
		return nil, invalid(fmt.Sprintf("cause must be one of %s", strings.Join(capif.KnownCauses, ", ")))
	}
	drop := func(t Target) bool {
		return (r.AefID == "" || t.AefID == r.AefID) && (len(r.APIIDs) == 0 || slices.Contains(r.APIIDs, t.APIID))
	}
	owed, err := s.withdrawFrom(ctx, r.APIInvokerID, drop, r.Cause, s.principalReader(ctx), dryRun)
	if err != nil {
		return nil, err
	}
	if len(owed) == 0 {
		return nil, notFound(CauseAPINotInContext, fmt.Sprintf("the security context of %q has no entry that matches", r.APIInvokerID))
	}
	if !dryRun {
		s.deliver(ctx, owed)
	}
	return owed, nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ExportRegistry is the registry as a document that ImportRegistry reads back to the same
// records: invokers (with onboardingSecretSha256, never a secret), AEFs (with their
// aefSecurityRoot) and service APIs as
// imported, each ordered by id. Only the records a document describes: nothing else of the
// registry (catalogues, the interface index, and any other item kind) is exported.
func (s *Service) ExportRegistry(ctx context.Context) (RegistryDoc, error) {
	recs, err := s.registry.Records(ctx)
	if err != nil {
		return RegistryDoc{}, err
	}
	doc := RegistryDoc{ServiceAPIs: recs.APIs}
	for _, p := range recs.Principals {
		switch p.Role {
		case RoleInvoker:
			doc.APIInvokers = append(doc.APIInvokers, InvokerRecord{APIInvokerID: p.ID, NotificationDestination: p.NotificationDestination,
				APIInvokerInformation: p.APIInvokerInformation, OnboardingSecretSHA256: hex.EncodeToString(p.SecretHash), Certificates: pinsOf(p)})
		case RoleAEF:
			a := AEFRecord{AefID: p.ID, Certificates: pinsOf(p)}
			if p.AefSecurityRoot != "" {
				a.AefSecurityRoot = &p.AefSecurityRoot
			}
			doc.AEFs = append(doc.AEFs, a)
		}
	}
	return doc, nil
}

// RevokedCertificates lists the revoked client certificates still in force (capif-admin list).
func (s *Service) RevokedCertificates(ctx context.Context) ([]RevokedCertificate, error) {
	recs, err := s.registry.Records(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	return slices.DeleteFunc(recs.RevokedCertificates, func(c RevokedCertificate) bool { return now.After(c.Until()) }), nil
}

// pinsOf is p's pinned certificates as a document carries them (nil: none).
func pinsOf(p Principal) *[]string {
	if len(p.Certificates) == 0 {
		return nil
	}
	return &p.Certificates
}

// Omitted is what a registry document leaves out of the registry: what importing it with
// pruning removes.
type Omitted struct {
	APIs, Invokers, AEFs []string // ids, sorted
}

// Empty reports whether nothing is omitted.
func (o Omitted) Empty() bool { return len(o.APIs)+len(o.Invokers)+len(o.AEFs) == 0 }

// OmittedBy lists the invokers, AEFs and service APIs of the registry that doc does not name.
func (s *Service) OmittedBy(ctx context.Context, doc RegistryDoc) (Omitted, error) {
	recs, err := s.registry.Records(ctx)
	if err != nil {
		return Omitted{}, err
	}
	named := map[string]bool{}
	for _, inv := range doc.APIInvokers {
		named[inv.APIInvokerID] = true
	}
	for _, a := range doc.AEFs {
		named[a.AefID] = true
	}
	apis := map[string]bool{}
	for _, d := range doc.ServiceAPIs {
		apis[d.APIID] = true
	}
	var o Omitted
	for _, p := range recs.Principals {
		switch {
		case named[p.ID]:
		case p.Role == RoleInvoker:
			o.Invokers = append(o.Invokers, p.ID)
		case p.Role == RoleAEF:
			o.AEFs = append(o.AEFs, p.ID)
		}
	}
	for _, d := range recs.APIs {
		if !apis[d.APIID] {
			o.APIs = append(o.APIs, d.APIID)
		}
	}
	return o, nil
}

// Prune removes what o names as the admin removals do, owing what they owe: the APIs first
// (revoked from every context, with notifications), then the invokers (their contexts, with
// notifications), then the AEFs (which by then publish nothing). It stops at the first failure;
// running it again completes it.
func (s *Service) Prune(ctx context.Context, o Omitted) error {
	for _, id := range o.APIs {
		if _, err := s.RemoveAPI(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("removing API %q: %w", id, err)
		}
	}
	for _, id := range o.Invokers {
		if err := s.RemoveInvoker(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("removing API invoker %q: %w", id, err)
		}
	}
	for _, id := range o.AEFs {
		if err := s.RemoveAEF(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("removing AEF %q: %w", id, err)
		}
	}
	return nil
}

// ContextSummary is what an operator sees of an invoker's security context: no key, no
// destination path.
type ContextSummary struct {
	Version int64
	Entries []EntrySummary
}

// EntrySummary is one entry: its targets and selected method.
type EntrySummary struct {
	Targets []Target
	Method  capif.SecurityMethod
}

// ContextSummaries summarises the security contexts of the invokers ids (absent: none).
func (s *Service) ContextSummaries(ctx context.Context, ids []string) (map[string]ContextSummary, error) {
	out := map[string]ContextSummary{}
	for _, id := range ids {
		snap, err := s.load(ctx, Query{APIInvokerID: id})
		if err != nil {
			return nil, err
		}
		if snap.Context == nil {
			continue
		}
		sum := ContextSummary{Version: snap.Context.Version}
		for _, e := range snap.Context.Entries {
			sum.Entries = append(sum.Entries, EntrySummary{Targets: e.Targets, Method: e.SelSecurityMethod})
		}
		out[id] = sum
	}
	return out, nil
}

// RevokeCertificate revokes a client certificate of principal id (capif-admin revoke-cert):
// from then on every request made with it is refused (401), until its NotAfter plus a day.
// certPEM must be one certificate whose one Subject CN is id (KindInvalid otherwise; id need not
// be registered any more). It changes no security context and notifies no invoker; for an
// invoker it owes each AEF of its context that has an aefSecurityRoot a push for all the
// invoker's apiIds there (cause UNEXPECTED_REASON: Rel-18 receivers know no other), written in
// the change that records the revocation, so the AEFs refuse the tokens issued to the
// certificate; AEFs the certificate added to the context meanwhile are owed theirs right after.
// With dryRun nothing is written. It returns the revocation and the pushes.
func (s *Service) RevokeCertificate(ctx context.Context, id, certPEM string, dryRun bool) (RevokedCertificate, []Owed, error) {
	c, err := certificateOf(certPEM)
	if err != nil {
		return RevokedCertificate{}, nil, invalid("the certificate " + err.Error())
	}
	if cn, ok := capif.SubjectCN(c); !ok || cn != id {
		return RevokedCertificate{}, nil, invalid(fmt.Sprintf("the certificate's one Subject CN must be %q", id))
	}
	rev := RevokedCertificate{Key: capif.CertificateKey(c), PrincipalID: id, Issuer: c.Issuer.String(),
		Serial: c.SerialNumber.Text(16), SubjectCN: id, NotAfter: c.NotAfter.UTC(), RevokedAt: s.clock.Now().UTC()}
	pushes, err := s.certificatePushes(ctx, id)
	if err != nil {
		return rev, nil, err
	}
	if dryRun {
		return rev, pushes, nil
	}
	if err := s.registry.Update(ctx, func(tx RegistryTx) error {
		if err := tx.PutRevokedCertificate(&rev); err != nil {
			return err
		}
		return tx.Owe(pushes)
	}); err != nil {
		return rev, nil, err
	}
	// The certificate may have added AEFs to the context between the read above and the commit;
	// from the commit on it cannot, so one more read finds every AEF still owed a push.
	later, err := s.certificatePushes(ctx, id)
	if err == nil {
		if extra := uncovered(later, pushes); len(extra) > 0 {
			if err = s.registry.Update(ctx, func(tx RegistryTx) error { return tx.Owe(extra) }); err == nil {
				pushes = append(pushes, extra...)
			}
		}
	}
	s.deliver(ctx, pushes)
	if err != nil {
		return rev, pushes, fmt.Errorf("revoked, but pushes to AEFs added meanwhile were not recorded (run it again): %w", err)
	}
	return rev, pushes, nil
}

// certificatePushes are the pushes a revoked certificate of id owes: for an invoker with a
// context, one per AEF with a root, naming all its apiIds there. Everything stays in the
// context: withdraw only names the AEFs and their apiIds.
func (s *Service) certificatePushes(ctx context.Context, id string) ([]Owed, error) {
	snap, err := s.load(ctx, Query{APIInvokerID: id})
	if err != nil || snap.Context == nil {
		return nil, err
	}
	_, owed, err := s.withdraw(snap.Context, func(Target) bool { return true }, capif.UnexpectedReason, s.principalReader(ctx))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(owed, func(o Owed) bool { return o.Receiver() != ToAEF }), nil
}

// uncovered are the pushes of later that no push of earlier already makes (same AEF, root and
// apiIds).
func uncovered(later, earlier []Owed) []Owed {
	key := func(o Owed) string {
		return o.Destination + "\x00" + o.Notification.AefID + "\x00" + strings.Join(o.Notification.APIIDs, ",")
	}
	return slices.DeleteFunc(later, func(o Owed) bool {
		return slices.ContainsFunc(earlier, func(e Owed) bool { return key(e) == key(o) })
	})
}
