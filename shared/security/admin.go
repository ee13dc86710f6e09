package security

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

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
	return s.registry.Update(ctx, func(tx RegistryTx) error { return importDoc(tx, doc) })
}

// RemoveInvoker offboards an invoker: its security context and its registry record are deleted
// in one change.
//
// The invoker is owed one SecurityNotification per AEF of its context (cause
// UNEXPECTED_REASON), written in the deleting change and delivered like a revocation's.
func (s *Service) RemoveInvoker(ctx context.Context, apiInvokerID string) error {
	var owed []Owed
	err := s.registry.Update(ctx, func(tx RegistryTx) error {
		owed = nil // what an earlier, re-run attempt owed was never written
		return removeInvoker(tx, apiInvokerID, func(sc *SecurityContext) []Owed {
			byAEF := map[string][]string{}
			withoutTargets(sc, func(t Target) bool {
				byAEF[t.AefID] = append(byAEF[t.AefID], t.APIID)
				return true
			})
			for _, aef := range sortedKeys(byAEF) {
				ids := slices.Compact(slices.Sorted(slices.Values(byAEF[aef])))
				owed = append(owed, s.owe(sc, aef, ids, capif.UnexpectedReason))
			}
			return owed
		})
	})
	if err != nil {
		return err
	}
	s.deliver(ctx, owed)
	return nil
}

// RemoveAEF deletes an AEF that no longer publishes any API.
func (s *Service) RemoveAEF(ctx context.Context, aefID string) error {
	return s.registry.Update(ctx, func(tx RegistryTx) error { return removeAEF(tx, aefID) })
}

// RemoveAPI withdraws a published API: it is revoked from every security context (one
// notification per context and AEF, cause UNEXPECTED_REASON), then removed from the catalogue.
// Re-running it completes a removal that was interrupted.
func (s *Service) RemoveAPI(ctx context.Context, apiID string) (revoked int, err error) {
	ids, err := s.store.ContextsWithAPI(ctx, apiID)
	if err != nil {
		return 0, err
	}
	// Every context's change commits on its own; what they owe is delivered together at the
	// end, DeliveryConcurrency at a time, also when a later context fails.
	var all []Owed
	defer func() { s.deliver(ctx, all) }()
	for _, id := range ids {
		var owed []Owed
		err := s.retryWrite(ctx, id, func() error {
			owed = owed[:0] // what an earlier, conflicting attempt owed was never written
			snap, err := s.load(ctx, Query{APIInvokerID: id})
			if err != nil || snap.Context == nil {
				return err
			}
			byAEF := map[string][]string{}
			sc, _ := withoutTargets(snap.Context, func(t Target) bool {
				if t.APIID == apiID {
					byAEF[t.AefID] = append(byAEF[t.AefID], t.APIID)
					return true
				}
				return false
			})
			for _, aef := range sortedKeys(byAEF) {
				owed = append(owed, s.owe(sc, aef, []string{apiID}, capif.UnexpectedReason))
			}
			if len(owed) == 0 {
				return nil
			}
			return s.replace(ctx, sc, owed)
		})
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

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ExportRegistry is the registry as a document that ImportRegistry reads back to the same
// records: invokers (with onboardingSecretSha256, never a secret), AEFs and service APIs as
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
				APIInvokerInformation: p.APIInvokerInformation, OnboardingSecretSHA256: hex.EncodeToString(p.SecretHash)})
		case RoleAEF:
			doc.AEFs = append(doc.AEFs, AEFRecord{AefID: p.ID})
		}
	}
	return doc, nil
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
