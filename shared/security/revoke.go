package security

import (
	"context"
	"fmt"
	"slices"

	"github.com/capifcore/capif-security/shared/capif"
)

// RevokeAll is DELETE trustedInvokers/{apiInvokerId}: it revokes every API of the calling AEF
// (only those: AEFs do not revoke each other), cause UNEXPECTED_REASON.
func (s *Service) RevokeAll(ctx context.Context, caller Caller, apiInvokerID string) error {
	return s.revoke(ctx, caller, apiInvokerID, nil)
}

// Revoke is POST trustedInvokers/{apiInvokerId}/delete with a SecurityNotification body.
func (s *Service) Revoke(ctx context.Context, caller Caller, apiInvokerID string, req *capif.SecurityNotification) error {
	if req == nil {
		if err := s.Authorize(ctx, RevokeAuthorization, caller, apiInvokerID); err != nil {
			return err
		}
		return invalid("a SecurityNotification body is required")
	}
	return s.revoke(ctx, caller, apiInvokerID, req)
}

// revoke removes the caller's targets (all of them, or those of req) from the context and owes
// the invoker one notification, and the revoking AEF its push, in one write.
func (s *Service) revoke(ctx context.Context, caller Caller, apiInvokerID string, req *capif.SecurityNotification) error {
	var owed []Owed
	q := aefQuery(caller, apiInvokerID)
	q.AefIDs = []string{caller.ID}
	err := s.retryWrite(ctx, apiInvokerID, func() error {
		snap, err := s.loadAuthorized(ctx, RevokeAuthorization, caller, apiInvokerID, q)
		if err != nil {
			return err
		}
		cause := capif.UnexpectedReason
		var only []string // nil: every API of the caller
		if req != nil {
			if params := ValidateRevocation(req, apiInvokerID); len(params) > 0 {
				return invalid("the SecurityNotification is not valid", params...)
			}
			if req.AefID != "" && req.AefID != caller.ID {
				return forbidden(CauseRoleNotAllowed, fmt.Sprintf("an AEF may only revoke its own APIs, not those of %q", req.AefID))
			}
			cause, only = req.Cause, req.APIIDs
		}
		if err := aefContextCheck(snap, caller.ID, apiInvokerID); err != nil {
			return err
		}
		if only != nil {
			if err := checkRevocable(snap, caller.ID, only); err != nil {
				return err
			}
		}
		sc, removed := withoutTargets(snap.Context, func(t Target) bool {
			return t.AefID == caller.ID && (only == nil || slices.Contains(only, t.APIID))
		})
		owed = s.owe(sc, snap.Caller, removed, cause)
		if req != nil {
			owed[0].Notification.AccessToken = req.AccessToken // Rel-19: passed on to the invoker as sent
		}
		return s.replace(ctx, sc, owed)
	})
	if err != nil {
		return err
	}
	s.deliver(ctx, owed)
	return nil
}

// checkRevocable: every apiId must be published by the caller (else 403, nothing revoked) and
// present in the context at the caller (else 404).
func checkRevocable(snap *Snapshot, callerID string, apiIDs []string) error {
	cat := snap.AEFs[callerID]
	for _, id := range apiIDs {
		published := false
		if cat != nil { // nil: the caller publishes nothing (any more)
			_, published = cat.API(id)
		}
		if !published {
			return forbidden(CauseAPINotPublished, fmt.Sprintf("API %q is not published by AEF %q", id, callerID))
		}
	}
	present := map[string]bool{}
	for _, e := range snap.Context.Entries {
		for _, t := range e.Targets {
			if t.AefID == callerID {
				present[t.APIID] = true
			}
		}
	}
	for _, id := range apiIDs {
		if !present[id] {
			return notFound(CauseAPINotInContext, fmt.Sprintf("API %q of AEF %q is not in the security context", id, callerID))
		}
	}
	return nil
}

// withoutTargets returns a copy of sc without the matching targets, dropping entries left empty,
// and the apiIds removed (sorted, unique).
func withoutTargets(sc *SecurityContext, drop func(Target) bool) (*SecurityContext, []string) {
	out := *sc
	out.Entries = make([]Entry, 0, len(sc.Entries))
	var removed []string
	for _, e := range sc.Entries {
		kept := make([]Target, 0, len(e.Targets))
		for _, t := range e.Targets {
			if drop(t) {
				if !slices.Contains(removed, t.APIID) {
					removed = append(removed, t.APIID)
				}
				continue
			}
			kept = append(kept, t)
		}
		if len(kept) > 0 {
			e.Targets = kept
			out.Entries = append(out.Entries, e)
		}
	}
	slices.Sort(removed)
	return &out, removed
}
