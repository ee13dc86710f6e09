package security

import (
	"fmt"
	"slices"
	"strings"
)

// ScopePrefix starts every CAPIF scope: 3gpp#aefId:apiName[,apiName…][;aefId:…].
const ScopePrefix = "3gpp#"

// Scope is a parsed scope: API names per aefId.
type Scope map[string][]string

// ParseScope parses the CAPIF scope grammar. Any malformation is an error whose text says where.
func ParseScope(s string) (Scope, error) {
	body, ok := strings.CutPrefix(s, ScopePrefix)
	if !ok {
		return nil, fmt.Errorf("scope must start with %q", ScopePrefix)
	}
	if body == "" {
		return nil, fmt.Errorf("scope names no AEF after %q", ScopePrefix)
	}
	sc := Scope{}
	for i, group := range strings.Split(body, ";") {
		aef, names, ok := strings.Cut(group, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("scope group %d (%q) lacks the ':' between aefId and API names", i+1, group)
		case aef == "" || strings.ContainsAny(aef, scopeSeparators):
			return nil, fmt.Errorf("scope group %d (%q) has an empty or malformed aefId", i+1, group)
		}
		for _, name := range strings.Split(names, ",") {
			if name == "" || strings.ContainsAny(name, scopeSeparators) {
				return nil, fmt.Errorf("scope group %d (%q) has an empty or malformed API name", i+1, group)
			}
			if !slices.Contains(sc[aef], name) {
				sc[aef] = append(sc[aef], name)
			}
		}
	}
	return sc, nil
}

// String renders the scope canonically: AEFs and API names sorted.
func (sc Scope) String() string {
	aefs := make([]string, 0, len(sc))
	for a := range sc {
		aefs = append(aefs, a)
	}
	slices.Sort(aefs)
	var b strings.Builder
	b.WriteString(ScopePrefix)
	for i, a := range aefs {
		if i > 0 {
			b.WriteByte(';')
		}
		names := slices.Clone(sc[a])
		slices.Sort(names)
		b.WriteString(a)
		b.WriteByte(':')
		b.WriteString(strings.Join(names, ","))
	}
	return b.String()
}

// AEFs returns the sorted aefIds of the scope (the token's audience).
func (sc Scope) AEFs() []string {
	out := make([]string, 0, len(sc))
	for a := range sc {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

func (sc Scope) add(aef, name string) {
	if !slices.Contains(sc[aef], name) {
		sc[aef] = append(sc[aef], name)
	}
}
