package security

import (
	"fmt"
	"slices"

	"github.com/capifcore/capif-security/shared/capif"
)

// methodSet is a set of known security methods as a bitmask.
type methodSet uint8

const allMethods methodSet = 1<<3 - 1 // PSK, PKI, OAUTH

func setOf(ms []capif.SecurityMethod) methodSet {
	var s methodSet
	for i, k := range capif.KnownSecurityMethods {
		if slices.Contains(ms, k) {
			s |= 1 << i
		}
	}
	return s
}

func (s methodSet) has(m capif.SecurityMethod) bool {
	i := slices.Index(capif.KnownSecurityMethods, m)
	return i >= 0 && s&(1<<i) != 0
}

// candidates is what one interface of a published API supports: the interface's own
// securityMethods take precedence over the AEF profile's; when neither level lists any, all three.
func candidates(profile []capif.SecurityMethod, iface *capif.InterfaceDescription) methodSet {
	if iface != nil && len(iface.SecurityMethods) > 0 {
		return setOf(iface.SecurityMethods)
	}
	if len(profile) > 0 {
		return setOf(profile)
	}
	return allMethods
}

// apiCandidates intersects the candidates of every interface p is served on (a profile with a
// domainName and no interfaces counts as one interface at profile level).
func apiCandidates(p PublishedAPI) methodSet {
	if len(p.Interfaces) == 0 {
		return candidates(p.SecurityMethods, nil)
	}
	s := allMethods
	for i := range p.Interfaces {
		s &= candidates(p.SecurityMethods, &p.Interfaces[i])
	}
	return s
}

// selectMethod picks the method of an entry among those the invoker prefers (pref) and every
// covered interface supports (cands): the first such method of the operator's priority, else
// the first such method the priority leaves out, in the invoker's order (an empty priority is
// the invoker's order). Unknown method strings are never selected.
func selectMethod(pref, priority []capif.SecurityMethod, cands methodSet) (capif.SecurityMethod, bool) {
	for _, m := range priority {
		if slices.Contains(pref, m) && cands.has(m) {
			return m, true
		}
	}
	for _, m := range pref {
		if !slices.Contains(priority, m) && cands.has(m) {
			return m, true
		}
	}
	return "", false
}

// resolveEntry maps one requested securityInfo entry to the (aefId, apiId, apiName) targets it
// covers and selects its method (selectMethod), using the registry data of snap.
// The invoker's authenticationInfo and authorizationInfo are not kept: they are the CCF's to
// fill (a PSK, the CA PEM), and clients in the field send placeholders there.
func resolveEntry(i int, e capif.SecurityInformation, snap *Snapshot, priority []capif.SecurityMethod) (Entry, *capif.InvalidParam) {
	p := fmt.Sprintf("/securityInfo/%d", i)
	var apis []PublishedAPI
	if e.AefID != "" {
		aef := snap.AEFs[e.AefID]
		if aef == nil {
			return Entry{}, &capif.InvalidParam{Param: p + "/aefId", Reason: fmt.Sprintf("no registered AEF %q", e.AefID)}
		}
		apis = aef.APIs
		if len(apis) == 0 {
			return Entry{}, &capif.InvalidParam{Param: p + "/aefId", Reason: fmt.Sprintf("AEF %q publishes no service API", e.AefID)}
		}
	} else {
		apis = snap.Interfaces[InterfaceKey(*e.InterfaceDetails)]
		if len(apis) == 0 {
			return Entry{}, &capif.InvalidParam{Param: p + "/interfaceDetails", Reason: "no published service API is served on this interface"}
		}
	}
	if e.APIID != "" {
		apis = slices.DeleteFunc(slices.Clone(apis), func(x PublishedAPI) bool { return x.APIID != e.APIID })
		if len(apis) == 0 {
			return Entry{}, &capif.InvalidParam{Param: p + "/apiId", Reason: fmt.Sprintf("API %q is not published there", e.APIID)}
		}
	}
	cands := allMethods
	targets := make([]Target, 0, len(apis))
	for _, a := range apis {
		cands &= apiCandidates(a)
		targets = append(targets, Target{AefID: a.AefID, APIID: a.APIID, APIName: a.APIName})
	}
	sel, ok := selectMethod(e.PrefSecurityMethods, priority, cands)
	if !ok {
		return Entry{}, &capif.InvalidParam{Param: p + "/prefSecurityMethods", Reason: "none of the preferred methods is supported by the targeted interfaces"}
	}
	return Entry{
		AefID:               e.AefID,
		InterfaceDetails:    e.InterfaceDetails,
		APIID:               e.APIID,
		PrefSecurityMethods: e.PrefSecurityMethods,
		SelSecurityMethod:   sel,
		AuthorizationFlow:   e.AuthorizationFlow,
		GrantType:           e.GrantType,
		Targets:             targets,
	}, nil
}

// identityKey says which target an entry addresses, so an update can keep the PSK of an entry
// whose target is unchanged.
func (e *Entry) identityKey() string {
	if e.InterfaceDetails != nil {
		return "if|" + InterfaceKey(*e.InterfaceDetails) + "|" + e.APIID
	}
	return "aef|" + e.AefID + "|" + e.APIID
}

// concerns reports whether any target of the entry is at aefID.
func (e *Entry) concerns(aefID string) bool {
	for _, t := range e.Targets {
		if t.AefID == aefID {
			return true
		}
	}
	return false
}

// Concerns reports whether any entry of the context has a target at aefID.
func (sc *SecurityContext) Concerns(aefID string) bool {
	for i := range sc.Entries {
		if sc.Entries[i].concerns(aefID) {
			return true
		}
	}
	return false
}

// AefIDs lists, sorted and unique, the AEFs that the context's targets are at: what a store
// keeps beside the context to answer Query.ForAEF without decoding it.
func (sc *SecurityContext) AefIDs() []string {
	var ids []string
	for i := range sc.Entries {
		for _, t := range sc.Entries[i].Targets {
			ids = append(ids, t.AefID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
