package security

import (
	"context"
	"fmt"

	"github.com/capifcore/capif-security/shared/capif"
)

// InvokerInfoQuery is what GET trustedInvokers/{apiInvokerId} asks to be included.
type InvokerInfoQuery struct {
	AuthenticationInfo bool
	AuthorizationInfo  bool
}

// GetInvokerInfo is GET trustedInvokers/{apiInvokerId} by an AEF: only the entries that concern
// the caller, with authenticationInfo / authorizationInfo only when asked for.
func (s *Service) GetInvokerInfo(ctx context.Context, caller Caller, apiInvokerID string, q InvokerInfoQuery) (*capif.ServiceSecurity, error) {
	snap, err := s.loadAuthorized(ctx, ObtainAPIInvokerInfo, caller, apiInvokerID, aefQuery(caller, apiInvokerID))
	if err != nil {
		return nil, err
	}
	if err := aefContextCheck(snap, caller.ID, apiInvokerID); err != nil {
		return nil, err
	}
	return s.render(ctx, snap.Context, view{aef: caller.ID, authn: q.AuthenticationInfo, authz: q.AuthorizationInfo})
}

// aefQuery is the read of an AEF route: the context, which the store may leave out (without
// decoding it) when it has no entry for the AEF, since the answer is then the same as for none.
func aefQuery(caller Caller, apiInvokerID string) Query {
	return Query{APIInvokerID: apiInvokerID, ForAEF: caller.ID}
}

// aefContextCheck answers 404 alike for a missing context and for one without an entry for the
// AEF, so that no AEF learns which invokers have a context.
func aefContextCheck(snap *Snapshot, aefID, apiInvokerID string) error {
	if snap.Context != nil && snap.Context.Concerns(aefID) {
		return nil
	}
	return notFound(CauseContextNotFound, fmt.Sprintf("no security context of API invoker %q for AEF %q", apiInvokerID, aefID))
}

// view selects what render shows.
type view struct {
	all          bool   // the owner's view: every entry
	aef          string // otherwise only the entries concerning this AEF
	authn, authz bool
}

func (s *Service) render(ctx context.Context, sc *SecurityContext, v view) (*capif.ServiceSecurity, error) {
	out := &capif.ServiceSecurity{
		NotificationDestination: sc.NotificationDestination,
		SupportedFeatures:       sc.SupportedFeatures,
		SecurityInfo:            []capif.SecurityInformation{},
	}
	for i := range sc.Entries {
		e := &sc.Entries[i]
		if !v.all && !e.concerns(v.aef) {
			continue
		}
		si := capif.SecurityInformation{
			AefID:               e.AefID,
			InterfaceDetails:    e.InterfaceDetails,
			APIID:               e.APIID,
			PrefSecurityMethods: e.PrefSecurityMethods,
			SelSecurityMethod:   e.SelSecurityMethod,
			AuthorizationFlow:   e.AuthorizationFlow,
			GrantType:           e.GrantType,
		}
		if v.authn {
			var err error
			if si.AuthenticationInfo, err = s.authenticationInfo(ctx, e); err != nil {
				return nil, err
			}
		}
		out.SecurityInfo = append(out.SecurityInfo, si)
	}
	return out, nil
}

// authenticationInfo is what the CCF generated for the entry: the PSK of a PSK entry, or the CA
// that verifies invoker certificates for a PKI entry (added when read). It has no
// authorizationInfo to give: that member is never answered.
func (s *Service) authenticationInfo(ctx context.Context, e *Entry) (string, error) {
	switch {
	case e.SelSecurityMethod == capif.PSK:
		return e.PSK, nil
	case e.SelSecurityMethod == capif.PKI:
		return s.cfg.ClientCA(ctx)
	}
	return "", nil
}
