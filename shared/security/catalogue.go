package security

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
)

// InterfaceKey canonicalises the address, port and prefix of an interface description: two
// descriptions with the same key denote the same interface. Security methods are not part of the
// identity (the invoker states its own preferences separately).
func InterfaceKey(d capif.InterfaceDescription) string {
	var b strings.Builder
	switch {
	case d.Fqdn != "":
		b.WriteString("fqdn:")
		b.WriteString(strings.TrimSuffix(strings.ToLower(d.Fqdn), "."))
	case d.Ipv4Addr != "":
		b.WriteString("ipv4:")
		b.WriteString(canonicalIP(d.Ipv4Addr))
	case d.Ipv6Addr != "":
		b.WriteString("ipv6:")
		b.WriteString(canonicalIP(d.Ipv6Addr))
	}
	b.WriteString("|port:")
	if d.Port != nil {
		b.WriteString(strconv.Itoa(*d.Port))
	}
	b.WriteString("|prefix:")
	b.WriteString(d.APIPrefix)
	return b.String()
}

func canonicalIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

// PublishedAPIs splits a published service API into one PublishedAPI per AEF profile.
func PublishedAPIs(d capif.ServiceAPIDescription) []PublishedAPI {
	out := make([]PublishedAPI, 0, len(d.AefProfiles))
	for _, p := range d.AefProfiles {
		out = append(out, PublishedAPI{
			AefID:           p.AefID,
			APIID:           d.APIID,
			APIName:         d.APIName,
			SecurityMethods: p.SecurityMethods,
			Interfaces:      p.InterfaceDescriptions,
		})
	}
	return out
}

// PutAPI inserts or replaces p in the AEF's catalogue, keeping it ordered by apiId.
func (a *AEF) PutAPI(p PublishedAPI) {
	a.RemoveAPI(p.APIID)
	i, _ := slices.BinarySearchFunc(a.APIs, p.APIID, func(x PublishedAPI, id string) int { return strings.Compare(x.APIID, id) })
	a.APIs = slices.Insert(a.APIs, i, p)
}

// RemoveAPI drops apiID from the catalogue and reports whether it was there.
func (a *AEF) RemoveAPI(apiID string) bool {
	n := len(a.APIs)
	a.APIs = slices.DeleteFunc(a.APIs, func(x PublishedAPI) bool { return x.APIID == apiID })
	return len(a.APIs) != n
}

// API returns the catalogue entry of apiID.
func (a *AEF) API(apiID string) (PublishedAPI, bool) {
	for _, p := range a.APIs {
		if p.APIID == apiID {
			return p, true
		}
	}
	return PublishedAPI{}, false
}

// InterfaceIndex maps each interface key of the published APIs to the APIs served on it, each
// narrowed to that one interface. Adapters store it to resolve interfaceDetails entries in one
// read.
func InterfaceIndex(apis []PublishedAPI) map[string][]PublishedAPI {
	idx := map[string][]PublishedAPI{}
	for _, p := range apis {
		for _, d := range p.Interfaces {
			k := InterfaceKey(d)
			q := p
			q.Interfaces = []capif.InterfaceDescription{d}
			idx[k] = append(idx[k], q)
		}
	}
	return idx
}

// InterfaceKeys lists the keys of the interfaces p is served on, without duplicates.
func InterfaceKeys(p PublishedAPI) []string {
	var keys []string
	for _, d := range p.Interfaces {
		if k := InterfaceKey(d); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}
