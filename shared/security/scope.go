package security

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
	pairs, err := scopePairs(s, nil)
	if err != nil {
		return nil, err
	}
	sc := Scope{}
	seen := make(map[scopePair]struct{}, min(len(pairs), 64)) // repeats make len(pairs) a poor hint
	for _, p := range pairs {
		if _, dup := seen[p]; dup {
			continue
		}
		if len(seen) == MaxScopeAPIs {
			return nil, errTooManyAPIs
		}
		seen[p] = struct{}{}
		sc[p.aef] = append(sc[p.aef], p.name)
	}
	return sc, nil
}

var errTooManyAPIs = fmt.Errorf("scope names more than %d APIs", MaxScopeAPIs)

// scopePair is one (aefId, apiName) a scope names.
type scopePair struct{ aef, name string }

func comparePairs(a, b scopePair) int {
	if c := strings.Compare(a.aef, b.aef); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// scopePairs appends to dst the pairs s names, in order and with repeats: ParseScope's grammar
// and messages, but for the bound on distinct APIs, which its callers apply.
func scopePairs(s string, dst []scopePair) ([]scopePair, error) {
	if len(s) > MaxScopeLength {
		return nil, fmt.Errorf("scope is %d bytes long; at most %d are accepted", len(s), MaxScopeLength)
	}
	// At most one pair per separator, plus one: room for all at once, not doubling growth (but
	// no more than a valid scope needs up front: a scope of separators alone fails early).
	dst = slices.Grow(dst, min(strings.Count(s, ",")+strings.Count(s, ";")+strings.Count(s, " ")+1, MaxScopeAPIs+1))
	several := strings.Contains(s, " ")
	i := 0
	for el := range strings.SplitSeq(s, " ") {
		i++
		var err error
		if dst, err = appendElement(dst, el); err != nil {
			if several {
				return nil, fmt.Errorf("scope element %d: %w", i, err)
			}
			return nil, err
		}
	}
	return dst, nil
}

func appendElement(dst []scopePair, el string) ([]scopePair, error) {
	body, ok := strings.CutPrefix(el, ScopePrefix)
	switch {
	case el == "":
		return nil, fmt.Errorf("scope is empty where a %q scope was expected (elements are separated by one space)", ScopePrefix)
	case !ok:
		return nil, fmt.Errorf("scope must start with %q", ScopePrefix)
	case body == "":
		return nil, fmt.Errorf("scope names no AEF after %q", ScopePrefix)
	}
	i := 0
	for group := range strings.SplitSeq(body, ";") {
		i++
		aef, names, ok := strings.Cut(group, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("scope group %d (%q) lacks the ':' between aefId and API names", i, group)
		case aef == "" || strings.ContainsAny(aef, scopeSeparators):
			return nil, fmt.Errorf("scope group %d (%q) has an empty or malformed aefId", i, group)
		}
		for name := range strings.SplitSeq(names, ",") {
			if name == "" || strings.ContainsAny(name, scopeSeparators) {
				return nil, fmt.Errorf("scope group %d (%q) has an empty or malformed API name", i, group)
			}
			dst = append(dst, scopePair{aef, name})
		}
	}
	return dst, nil
}

// grant is a set of pairs, sorted by aefId then API name, each once: the scope a token is
// granted, and what a security context allows.
type grant []scopePair

// newGrant sorts and deduplicates pairs in place.
func newGrant(pairs []scopePair) grant {
	slices.SortFunc(pairs, comparePairs)
	return grant(slices.Compact(pairs))
}

// parseGrant is ParseScope's reading of s as a grant, appended to dst.
func parseGrant(s string, dst []scopePair) (grant, error) {
	pairs, err := scopePairs(s, dst)
	if err != nil {
		return nil, err
	}
	g := newGrant(pairs)
	if len(g) > MaxScopeAPIs {
		return nil, errTooManyAPIs
	}
	return g, nil
}

// within names the first pair of g (in order) that allowed lacks.
func (g grant) within(allowed grant) error {
	for _, p := range g {
		if _, ok := slices.BinarySearchFunc(allowed, p, comparePairs); ok {
			continue
		}
		i, _ := slices.BinarySearchFunc(allowed, scopePair{aef: p.aef}, comparePairs)
		if i == len(allowed) || allowed[i].aef != p.aef {
			return fmt.Errorf("AEF %q is not authorized for OAUTH in the API invoker's security context", p.aef)
		}
		return fmt.Errorf("API %q of AEF %q is not authorized for OAUTH in the API invoker's security context", p.name, p.aef)
	}
	return nil
}

// aefs are g's aefIds, each once, in order (the token's audience).
func (g grant) aefs() []string {
	n := 0
	for i := range g {
		if i == 0 || g[i].aef != g[i-1].aef {
			n++
		}
	}
	out := make([]string, 0, n)
	for i := range g {
		if i == 0 || g[i].aef != g[i-1].aef {
			out = append(out, g[i].aef)
		}
	}
	return out
}

// String renders g canonically: 3gpp#aef:name,name;aef:name, in g's order.
func (g grant) String() string {
	n := len(ScopePrefix)
	for i, p := range g {
		n += 1 + len(p.name)
		if i == 0 || p.aef != g[i-1].aef {
			n += 1 + len(p.aef)
		}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(ScopePrefix)
	for i, p := range g {
		newAEF := i == 0 || p.aef != g[i-1].aef
		switch {
		case i == 0:
		case newAEF:
			b.WriteByte(';')
		default:
			b.WriteByte(',')
		}
		if newAEF {
			b.WriteString(p.aef)
			b.WriteByte(':')
		}
		b.WriteString(p.name)
	}
	return b.String()
}

// String renders the scope canonically: AEFs and API names sorted.
func (sc Scope) String() string {
	var pairs []scopePair
	for a, names := range sc {
		for _, n := range names {
			pairs = append(pairs, scopePair{a, n})
		}
	}
	return newGrant(pairs).String()
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
