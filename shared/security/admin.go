package security

import (
	"context"
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
