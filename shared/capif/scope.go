package capif

import (
	"fmt"
	"slices"
	"strings"
)

// ScopePrefix starts every CAPIF scope: 3gpp#aefId:apiName[,apiName…][;aefId:…].
const ScopePrefix = "3gpp#"

// Bounds of a requested scope, so that a token request costs the same small work whatever a
// client sends: a scope longer than MaxScopeLength bytes or naming more than MaxScopeAPIs
// (aefId, apiName) pairs is refused before anything else is looked at.
const (
	MaxScopeLength = 8 << 10
	MaxScopeAPIs   = 1024
)

// Scope is a parsed scope: API names per aefId, each name once, in the order first named.
type Scope map[string][]string

// ParseScope parses a scope parameter: one or more space-separated elements (RFC 6749 §3.3),
// each in the CAPIF grammar; the result is their union. Any malformation is an error whose text
// says where. The work is linear in the length of s.
func ParseScope(s string) (Scope, error) {
	if len(s) > MaxScopeLength {
		return nil, fmt.Errorf("scope is %d bytes long; at most %d are accepted", len(s), MaxScopeLength)
	}
	p := scopeParser{sc: Scope{}, seen: map[[2]string]bool{}}
	several := strings.Contains(s, " ")
	i := 0
	for el := range strings.SplitSeq(s, " ") {
		i++
		if err := p.element(el); err != nil {
			if several {
				return nil, fmt.Errorf("scope element %d: %w", i, err)
			}
			return nil, err
		}
	}
	if len(p.seen) > MaxScopeAPIs {
		return nil, fmt.Errorf("scope names more than %d APIs", MaxScopeAPIs)
	}
	return p.sc, nil
}

// scopeParser collects the pairs of a scope, each once.
type scopeParser struct {
	sc   Scope
	seen map[[2]string]bool
}

// ScopeSeparators may not appear in an aefId or an API name (nor, so, in a registry id): they
// delimit the scope grammar.
const ScopeSeparators = ":;,# "

// element adds the pairs of one element.
func (p *scopeParser) element(el string) error {
	body, ok := strings.CutPrefix(el, ScopePrefix)
	switch {
	case el == "":
		return fmt.Errorf("scope is empty where a %q scope was expected (elements are separated by one space)", ScopePrefix)
	case !ok:
		return fmt.Errorf("scope must start with %q", ScopePrefix)
	case body == "":
		return fmt.Errorf("scope names no AEF after %q", ScopePrefix)
	}
	i := 0
	for group := range strings.SplitSeq(body, ";") {
		i++
		aef, names, ok := strings.Cut(group, ":")
		switch {
		case !ok:
			return fmt.Errorf("scope group %d (%q) lacks the ':' between aefId and API names", i, group)
		case aef == "" || strings.ContainsAny(aef, ScopeSeparators):
			return fmt.Errorf("scope group %d (%q) has an empty or malformed aefId", i, group)
		}
		for name := range strings.SplitSeq(names, ",") {
			if name == "" || strings.ContainsAny(name, ScopeSeparators) {
				return fmt.Errorf("scope group %d (%q) has an empty or malformed API name", i, group)
			}
			// A repeat is dropped; past the bound the names are only checked (the whole scope
			// parses before the bound is reported).
			if key := [2]string{aef, name}; len(p.seen) <= MaxScopeAPIs && !p.seen[key] {
				p.seen[key] = true
				p.sc[aef] = append(p.sc[aef], name)
			}
		}
	}
	return nil
}

// Has reports whether the scope names apiName at aefID.
func (sc Scope) Has(aefID, apiName string) bool { return slices.Contains(sc[aefID], apiName) }

// String renders the scope canonically: AEFs and API names sorted.
func (sc Scope) String() string {
	var b strings.Builder
	b.WriteString(ScopePrefix)
	for i, aef := range sc.AEFs() {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(aef)
		b.WriteByte(':')
		b.WriteString(strings.Join(slices.Sorted(slices.Values(sc[aef])), ","))
	}
	return b.String()
}

// AEFs returns the sorted aefIds of the scope.
func (sc Scope) AEFs() []string {
	out := make([]string, 0, len(sc))
	for a := range sc {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}
