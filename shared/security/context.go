package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/capifcore/capif-security/shared/capif"
)

// CreateSecurityContext is PUT trustedInvokers/{apiInvokerId}.
func (s *Service) CreateSecurityContext(ctx context.Context, caller Caller, apiInvokerID string, req *capif.ServiceSecurity) (*capif.ServiceSecurity, error) {
	snap, err := s.loadAuthorized(ctx, ObtainSecurityMethod, caller, apiInvokerID, invokerQuery(apiInvokerID, req))
	if err != nil {
		return nil, err
	}
	if err := s.checkBody(req); err != nil {
		return nil, err
	}
	if snap.Context != nil {
		return nil, errContextExists(apiInvokerID)
	}
	sc, err := s.buildContext(apiInvokerID, req, snap, nil)
	if err != nil {
		return nil, err
	}
	if err := s.store.Create(ctx, sc); errors.Is(err, ErrExists) {
		return nil, errContextExists(apiInvokerID)
	} else if err != nil {
		return nil, err
	}
	s.testNotification(ctx, sc, req)
	return s.render(ctx, sc, view{all: true, authn: true, authz: true})
}

// UpdateSecurityContext is POST trustedInvokers/{apiInvokerId}/update: it replaces securityInfo
// and notificationDestination, keeping each PSK whose entry still addresses the same target.
func (s *Service) UpdateSecurityContext(ctx context.Context, caller Caller, apiInvokerID string, req *capif.ServiceSecurity) (*capif.ServiceSecurity, error) {
	var sc *SecurityContext
	lock := apiInvokerID
	if caller.ID != apiInvokerID {
		lock = "" // refused whatever the context holds: never wait on (or delay) its writers
	}
	err := s.retryWrite(ctx, lock, func() error {
		snap, err := s.loadAuthorized(ctx, ObtainSecurityMethod, caller, apiInvokerID, invokerQuery(apiInvokerID, req))
		if err != nil {
			return err
		}
		if err := s.checkBody(req); err != nil {
			return err
		}
		if snap.Context == nil {
			return notFound(CauseContextNotFound, fmt.Sprintf("no security context for API invoker %q; create it with PUT", apiInvokerID))
		}
		if sc, err = s.buildContext(apiInvokerID, req, snap, snap.Context); err != nil {
			return err
		}
		return s.replace(ctx, sc, nil)
	})
	if err != nil {
		return nil, err
	}
	s.testNotification(ctx, sc, req)
	return s.render(ctx, sc, view{all: true, authn: true, authz: true})
}

// invokerQuery is the read of an owner's create or update: its context and the registry entries
// that resolve its securityInfo (loadAuthorized drops them for anyone else).
func invokerQuery(apiInvokerID string, req *capif.ServiceSecurity) Query {
	q := Query{APIInvokerID: apiInvokerID}
	if req == nil || len(req.SecurityInfo) > MaxSecurityInfo {
		return q
	}
	aefs, ifcs := map[string]bool{}, map[string]bool{}
	for _, e := range req.SecurityInfo {
		switch {
		case e.AefID != "" && e.InterfaceDetails == nil:
			if !aefs[e.AefID] {
				aefs[e.AefID] = true
				q.AefIDs = append(q.AefIDs, e.AefID)
			}
		case e.InterfaceDetails != nil && e.AefID == "":
			if k := InterfaceKey(*e.InterfaceDetails); !ifcs[k] {
				ifcs[k] = true
				q.InterfaceKeys = append(q.InterfaceKeys, k)
			}
		}
	}
	return q
}

func (s *Service) checkBody(req *capif.ServiceSecurity) error {
	if req == nil {
		return invalid("a ServiceSecurity body is required")
	}
	params := ValidateServiceSecurity(req)
	if c, ok := s.notifier.(DestinationChecker); ok && req.NotificationDestination != "" && !slices.ContainsFunc(params, func(p capif.InvalidParam) bool { return p.Param == "/notificationDestination" }) {
		if err := c.CheckDestination(req.NotificationDestination); err != nil {
			params = append(params, capif.InvalidParam{Param: "/notificationDestination", Reason: err.Error()})
		}
	}
	if len(params) > 0 {
		return invalid("the ServiceSecurity is not valid", params...)
	}
	return nil
}

func errContextExists(apiInvokerID string) error {
	return forbidden(CauseContextExists, fmt.Sprintf("a security context for API invoker %q already exists; use POST …/trustedInvokers/%s/update to change it", apiInvokerID, apiInvokerID))
}

// buildContext resolves and selects every entry; prev (nil on create) supplies the PSKs to keep.
func (s *Service) buildContext(apiInvokerID string, req *capif.ServiceSecurity, snap *Snapshot, prev *SecurityContext) (*SecurityContext, error) {
	sc := &SecurityContext{
		APIInvokerID:            apiInvokerID,
		NotificationDestination: req.NotificationDestination,
		SupportedFeatures:       NegotiateFeatures(req.SupportedFeatures),
		Entries:                 make([]Entry, 0, len(req.SecurityInfo)),
	}
	keep := map[string]string{}
	if prev != nil {
		sc.Version = prev.Version
		for i := range prev.Entries {
			if e := &prev.Entries[i]; e.PSK != "" {
				keep[e.identityKey()] = e.PSK
			}
		}
	}
	var params []capif.InvalidParam
	seen := map[string]int{}
	for i, in := range req.SecurityInfo {
		if in.AuthenticationInfo != "" || in.AuthorizationInfo != "" {
			// Not stored, not echoed: the CCF fills both. The value itself is never logged.
			s.cfg.Logger.Debug("invoker-supplied security information ignored", slog.String("apiInvokerId", apiInvokerID), slog.Int("securityInfo", i))
		}
		e, bad := resolveEntry(i, in, snap, s.cfg.MethodPriority)
		if bad != nil {
			params = append(params, *bad)
			continue
		}
		k := e.identityKey()
		if j, dup := seen[k]; dup {
			params = append(params, param(fmt.Sprintf("/securityInfo/%d", i), "addresses the same target as /securityInfo/%d", j))
			continue
		}
		seen[k] = i
		if e.SelSecurityMethod == capif.PSK {
			if e.PSK = keep[k]; e.PSK == "" {
				e.PSK = s.randomString(32)
			}
		}
		sc.Entries = append(sc.Entries, e)
	}
	if len(params) > 0 {
		return nil, invalid("some securityInfo entries cannot be served", params...)
	}
	if b, _ := json.Marshal(sc); len(b) > MaxEncodedContext {
		return nil, &Error{Kind: KindTooLarge, Cause: CauseTooLarge, Detail: fmt.Sprintf("the security context would take %d bytes; at most %d are stored", len(b), MaxEncodedContext)}
	}
	return sc, nil
}

// testNotification sends the TS 29.122 test notification when Notification_test_event was
// negotiated and asked for.
func (s *Service) testNotification(ctx context.Context, sc *SecurityContext, req *capif.ServiceSecurity) {
	if req.RequestTestNotification == nil || !*req.RequestTestNotification || !HasFeature(sc.SupportedFeatures, FeatureNotificationTestEvent) {
		return
	}
	body := capif.TestNotification{Subscription: ResourceURI(s.cfg.APIRoot, sc.APIInvokerID)}
	if err := s.notifier.Notify(context.WithoutCancel(ctx), Delivery{ID: s.randomString(16), Destination: sc.NotificationDestination, Body: body}); err != nil {
		s.cfg.Logger.Warn("test notification not delivered", "apiInvokerId", sc.APIInvokerID, "destination", RedactURL(sc.NotificationDestination), "error", err.Error())
	}
}
