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
	if len(s) > MaxScopeLength {
		return nil, fmt.Errorf("scope is %d bytes long; at most %d are accepted", len(s), MaxScopeLength)
	}
	elements := strings.Split(s, " ")
	sc := Scope{}
	seen := map[scopePair]struct{}{}
	for i, el := range elements {
		where := ""
		if len(elements) > 1 {
			where = fmt.Sprintf("scope element %d: ", i+1)
		}
		if err := sc.parseElement(el, seen); err != nil {
			return nil, fmt.Errorf("%s%w", where, err)
		}
	}
	return sc, nil
}

type scopePair struct{ aef, name string }

func (sc Scope) parseElement(el string, seen map[scopePair]struct{}) error {
	body, ok := strings.CutPrefix(el, ScopePrefix)
	switch {
	case el == "":
		return fmt.Errorf("scope is empty where a %q scope was expected (elements are separated by one space)", ScopePrefix)
	case !ok:
		return fmt.Errorf("scope must start with %q", ScopePrefix)
	case body == "":
		return fmt.Errorf("scope names no AEF after %q", ScopePrefix)
	}
	for i, group := range strings.Split(body, ";") {
		aef, names, ok := strings.Cut(group, ":")
		switch {
		case !ok:
			return fmt.Errorf("scope group %d (%q) lacks the ':' between aefId and API names", i+1, group)
		case aef == "" || strings.ContainsAny(aef, scopeSeparators):
			return fmt.Errorf("scope group %d (%q) has an empty or malformed aefId", i+1, group)
		}
		for _, name := range strings.Split(names, ",") {
			if name == "" || strings.ContainsAny(name, scopeSeparators) {
				return fmt.Errorf("scope group %d (%q) has an empty or malformed API name", i+1, group)
			}
			p := scopePair{aef, name}
			if _, dup := seen[p]; dup {
				continue
			}
			if len(seen) == MaxScopeAPIs {
				return fmt.Errorf("scope names more than %d APIs", MaxScopeAPIs)
			}
			seen[p] = struct{}{}
			sc[aef] = append(sc[aef], name)
		}
	}
	return nil
}

// String renders the scope canonically: AEFs and API names sorted.
func (sc Scope) String() string {
	var b strings.Builder
	b.WriteString(ScopePrefix)
	for i, a := range sc.AEFs() {
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

// scopeSet is the set form of what a context allows, built once per token request.
type scopeSet map[scopePair]struct{}

func (set scopeSet) add(aef, name string) { set[scopePair{aef, name}] = struct{}{} }

// scope lists the set as a Scope.
func (set scopeSet) scope() Scope {
	sc := Scope{}
	for p := range set {
		sc[p.aef] = append(sc[p.aef], p.name)
	}
	return sc
}

// within names the first requested (aefId, apiName) outside allowed.
func (sc Scope) within(allowed scopeSet) error {
	aefs := map[string]bool{}
	for p := range allowed {
		aefs[p.aef] = true
	}
	for _, aef := range sc.AEFs() {
		if !aefs[aef] {
			return fmt.Errorf("AEF %q is not authorized for OAUTH in the API invoker's security context", aef)
		}
		for _, n := range sc[aef] {
			if _, ok := allowed[scopePair{aef, n}]; !ok {
				return fmt.Errorf("API %q of AEF %q is not authorized for OAUTH in the API invoker's security context", n, aef)
			}
		}
	}
	return nil
}
