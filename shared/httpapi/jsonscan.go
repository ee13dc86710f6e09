package httpapi

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Structural bounds of a JSON request body, checked in one pass before it is decoded, so that
// any body within MaxBody costs work and memory proportional to its size. No schema of the API
// nests deeper than a few levels or has arrays longer than a security context can hold.
const (
	MaxJSONDepth    = 32
	MaxJSONElements = 1024 // per array, and members per object
)

// jsonScan is a single-pass checker of a JSON text: syntax (RFC 8259), UTF-8, lone surrogate
// escapes, nesting depth, array and object sizes, and duplicate member names (compared as
// encoding/json would match them to fields: case-insensitively). encoding/json accepts
// duplicates (the last wins) and substitutes U+FFFD for broken UTF-8, so a client could get a
// request read differently from what it meant; here both are errors.
//
// With find ≥ 0 it instead records the JSON pointer of the innermost value that spans the
// offset find (for a type error's position); the path is kept on one stack, so the work stays
// linear in the size of the body whatever its shape.
type jsonScan struct {
	b     []byte
	i     int
	depth int

	find  int64    // offset to locate, -1 for none
	names []string // member names from the root that the located value must have (case-folded)
	path  []string // pointer segments of the value being read
	keys  []int    // how many of path's segments are member names, per level
	best  []string
}

// scanError is a structural fault of a body, with the offset it was found at.
type scanError struct {
	offset int
	msg    string
}

func (e *scanError) Error() string { return fmt.Sprintf("%s (at byte %d)", e.msg, e.offset) }

// checkJSON reports the first structural fault of body, or nil.
func checkJSON(body []byte) error {
	if !utf8.Valid(body) {
		return &scanError{offset: invalidUTF8At(body), msg: "the body is not valid UTF-8"}
	}
	s := &jsonScan{b: body, find: -1}
	s.space()
	if err := s.value(); err != nil {
		return err
	}
	s.space()
	if s.i != len(s.b) {
		return s.fail("data after the JSON value")
	}
	return nil
}

// pointerAt is the JSON pointer (RFC 6901) of the innermost value of body (already checked)
// that spans offset and whose member names are field's (UnmarshalTypeError.Field: names from
// the root, dot-separated, no array index). Should none match, field's names alone are used.
func pointerAt(body []byte, offset int64, field string) string {
	want := strings.Split(field, ".")
	s := &jsonScan{b: body, find: offset, names: want}
	s.space()
	_ = s.value()
	path := s.best
	if path == nil {
		path = want
	}
	var b strings.Builder
	for _, seg := range path {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(seg))
	}
	return b.String()
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// foldKey folds a member name the way encoding/json matches names to fields (Unicode simple
// folding, as bytes.EqualFold: "ſ" and "s", "K" and "k" are one name), so two members that
// would fill one field are caught as duplicates.
func foldKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

func (s *jsonScan) fail(msg string) error { return &scanError{offset: s.i, msg: msg} }

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value reads one value at s.i (whitespace already skipped).
func (s *jsonScan) value() error {
	start := s.i
	if s.i >= len(s.b) {
		return s.fail("unexpected end of the body")
	}
	var err error
	switch c := s.b[s.i]; {
	case c == '{':
		err = s.object()
	case c == '[':
		err = s.array()
	case c == '"':
		_, _, err = s.str()
	case c == '-' || '0' <= c && c <= '9':
		err = s.number()
	case c == 't':
		err = s.literal("true")
	case c == 'f':
		err = s.literal("false")
	case c == 'n':
		err = s.literal("null")
	default:
		return s.fail(fmt.Sprintf("unexpected character %q", c))
	}
	if err != nil {
		return err
	}
	if s.find >= 0 && int64(start) < s.find && s.find <= int64(s.i) && len(s.path) >= len(s.best) && s.matches() {
		s.best = append(s.best[:0], s.path...)
	}
	return nil
}

// matches reports whether the member names on the current path are the wanted ones.
func (s *jsonScan) matches() bool {
	n := 0
	for i, seg := range s.path {
		if s.keys[i] == 0 {
			continue
		}
		if n >= len(s.names) || !strings.EqualFold(seg, s.names[n]) {
			return false
		}
		n++
	}
	return n == len(s.names)
}

func (s *jsonScan) enter() error {
	if s.depth++; s.depth > MaxJSONDepth {
		return s.fail(fmt.Sprintf("nesting deeper than %d levels", MaxJSONDepth))
	}
	s.i++
	s.space()
	return nil
}

func (s *jsonScan) push(seg string, key bool) {
	if s.find < 0 {
		return
	}
	k := 0
	if key {
		k = 1
	}
	s.path = append(s.path, seg)
	s.keys = append(s.keys, k)
}

func (s *jsonScan) pop() {
	if s.find < 0 {
		return
	}
	s.path = s.path[:len(s.path)-1]
	s.keys = s.keys[:len(s.keys)-1]
}

func (s *jsonScan) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	var seen map[string]struct{} // folded member names, made on the second member
	var first string
	for n := 0; ; n++ {
		if s.i < len(s.b) && s.b[s.i] == '}' && n == 0 {
			return s.leave()
		}
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.fail("expected a member name")
		}
		keyAt := s.i
		name, escaped, err := s.str()
		if err != nil {
			return err
		}
		if n == MaxJSONElements {
			return &scanError{offset: keyAt, msg: fmt.Sprintf("an object with more than %d members", MaxJSONElements)}
		}
		if s.find < 0 {
			key := s.b[keyAt+1 : s.i-1]
			var k string
			if escaped {
				_ = json.Unmarshal(s.b[keyAt:s.i], &k) // already checked: cannot fail
			} else {
				k = string(key)
			}
			folded := foldKey(k)
			switch {
			case n == 0:
				first = folded
			default:
				if seen == nil {
					seen = map[string]struct{}{first: {}}
				}
				if _, dup := seen[folded]; dup {
					return &scanError{offset: keyAt, msg: fmt.Sprintf("member %q appears more than once", k)}
				}
				seen[folded] = struct{}{}
			}
		} else if escaped {
			_ = json.Unmarshal(s.b[keyAt:s.i], &name)
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.fail("expected ':' after a member name")
		}
		s.i++
		s.space()
		s.push(name, true)
		if err := s.value(); err != nil {
			return err
		}
		s.pop()
		if more, err := s.next('}', "an object"); err != nil || !more {
			return err
		}
	}
}

func (s *jsonScan) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	for n := 0; ; n++ {
		if s.i < len(s.b) && s.b[s.i] == ']' && n == 0 {
			return s.leave()
		}
		if n == MaxJSONElements {
			return s.fail(fmt.Sprintf("an array with more than %d elements", MaxJSONElements))
		}
		if s.find >= 0 {
			s.push(strconv.Itoa(n), false)
		}
		if err := s.value(); err != nil {
			return err
		}
		s.pop()
		if more, err := s.next(']', "an array"); err != nil || !more {
			return err
		}
	}
}

// next reads what follows a member or element: ',' (more follow) or the closing delimiter,
// which leaves the container.
func (s *jsonScan) next(closing byte, in string) (more bool, err error) {
	s.space()
	switch {
	case s.i < len(s.b) && s.b[s.i] == ',':
		s.i++
		s.space()
		return true, nil
	case s.i < len(s.b) && s.b[s.i] == closing:
		return false, s.leave()
	}
	return false, s.fail(fmt.Sprintf("expected ',' or '%c' in %s", closing, in))
}

// leave steps over a closing delimiter.
func (s *jsonScan) leave() error {
	s.i++
	s.depth--
	return nil
}

// str reads a string; name is its raw content when it has no escapes (escaped reports them).
func (s *jsonScan) str() (name string, escaped bool, err error) {
	start := s.i
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !escaped && s.find >= 0 {
				name = string(s.b[start+1 : s.i-1])
			}
			return name, escaped, nil
		case c == '\\':
			escaped = true
			if err := s.escape(); err != nil {
				return "", false, err
			}
		case c < 0x20:
			return "", false, s.fail("a control character in a string")
		default:
			s.i++
		}
	}
	return "", false, &scanError{offset: start, msg: "an unterminated string"}
}

// escape reads one escape sequence at s.i (the backslash); a \u escape of a surrogate must be
// half of a pair.
func (s *jsonScan) escape() error {
	if s.i+1 >= len(s.b) {
		return s.fail("an unterminated escape")
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
	default:
		return s.fail("an invalid escape")
	}
	r, ok := s.hex4(s.i + 2)
	if !ok {
		return s.fail("an invalid \\u escape")
	}
	s.i += 6
	if !utf16.IsSurrogate(r) {
		return nil
	}
	if r < 0xdc00 && s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
		if r2, ok := s.hex4(s.i + 2); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
			s.i += 6
			return nil
		}
	}
	return s.fail("a \\u escape of half a surrogate pair")
}

func (s *jsonScan) hex4(at int) (rune, bool) {
	if at+4 > len(s.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.b[at:at+4]), 16, 32)
	return rune(v), err == nil
}

func (s *jsonScan) number() error {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case digits() == 0:
		return s.fail("a malformed number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.fail("a malformed number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.fail("a malformed number")
		}
	}
	return nil
}

func (s *jsonScan) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.fail("an unknown literal")
	}
	s.i += len(word)
	return nil
}
