// Package registrydoc reads the registry document (the JSON of capif-local -registry and
// capif-admin import) strictly: a typo never silently drops data. What the document says is the
// domain's to check (security.RegistryDoc.Validate, Service.ImportRegistry).
package registrydoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// Read reads a registry document (the JSON of `-registry` and `capif-admin import`);
// "-" reads standard input. It is strict, so a typo never silently drops data: a syntax error, a
// wrong type or an unknown member is refused with its JSON path and line:column. The registry's
// own objects (the top level, apiInvokers[], aefs[]) take only the members this service reads;
// serviceApis[] take every member the Publish_Service_API schemas (Rel-18 and Rel-19) define for
// ServiceAPIDescription, AefProfile, InterfaceDescription and Version, whether read here or not.
// Validation of the content is the service's (RegistryDoc.Validate, ImportRegistry).
func Read(path string) (security.RegistryDoc, error) {
	var doc security.RegistryDoc
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return doc, fmt.Errorf("registry file %s does not exist (the -registry / -f file: a JSON registry document such as examples/registry.json)", path)
	}
	if err != nil {
		return doc, fmt.Errorf("registry file: %w", err)
	}
	if err := Parse(b, &doc); err != nil {
		return doc, fmt.Errorf("registry %s:%w", path, err)
	}
	return doc, nil
}

// RegistryError is a refused registry document: where (JSON path, 1-based line and column) and
// why.
type RegistryError struct {
	Path         string // e.g. serviceApis[0].aefProfiles[1].aefid; "" for the document
	Line, Column int
	Reason       string
}

func (e *RegistryError) Error() string {
	where := e.Path
	if where == "" {
		where = "(document)"
	}
	return fmt.Sprintf("%d:%d: %s: %s", e.Line, e.Column, where, e.Reason)
}

// Parse decodes a registry document strictly (see Read); its errors are
// *RegistryError.
func Parse(b []byte, doc *security.RegistryDoc) error {
	var vals []valueAt
	if err := checkMembers(b, &vals); err != nil {
		return err
	}
	err := json.Unmarshal(b, doc)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		// The error's offset lies inside (or just after) the offending value: the last value
		// starting before it is that value.
		i := sort.Search(len(vals), func(i int) bool { return vals[i].off >= int(typeErr.Offset) }) - 1
		v := valueAt{}
		if i >= 0 {
			v = vals[i]
		}
		return posError(b, v.off, v.path, fmt.Sprintf("a JSON %s where %s is expected", typeErr.Value, goKind(typeErr.Type)))
	}
	if err != nil {
		return posError(b, 0, "", err.Error())
	}
	return nil
}

func goKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return goKind(t.Elem())
	}
	return t.String()
}

func posError(b []byte, off int, path, reason string) *RegistryError {
	off = min(max(off, 0), len(b))
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := 1 + len([]rune(string(b[bytes.LastIndexByte(b[:off], '\n')+1:off])))
	return &RegistryError{Path: path, Line: line, Column: col, Reason: reason}
}

// members are the member names accepted at one place of the document; children the places
// below it (an array's elements share their array's place). A place without members takes any
// member (deeper parts of a service API, not described here).
type place struct {
	elements bool // the place of an array's elements (an object in its stead is a type error)
	members  map[string]bool
	children map[string]*place
	// values, when set, are the only strings accepted as the place's array elements.
	values []string
}

// securityMethods are the securityMethods a registry may publish: deliberately stricter than the
// API's open enumeration (an invoker's unknown value is kept), so a typo such as "OAUHT" in a
// registry is refused rather than silently leaving an API without the method.
var securityMethods = &place{elements: true, values: capif.KnownSecurityMethods}

// Member names of the Publish_Service_API schemas, Rel-18 ∪ Rel-19 (../shared/spec; a test
// checks these lists against both YAMLs).
var (
	serviceAPIDescriptionMembers = []string{"aefProfiles", "apiId", "apiName", "apiProvName", "apiStatus", "apiSuppFeats",
		"ccfId", "description", "netSliceInfo", "pubApiPath", "serviceAPICategory", "shareableInfo", "supportedFeatures"}
	aefProfileMembers = []string{"aefId", "aefLocation", "dataFormat", "domainName", "grantTypes", "interfaceDescriptions",
		"protocol", "securityMethods", "serviceKpis", "ueIpRange", "versions"}
	interfaceDescriptionMembers = []string{"apiPrefix", "fqdn", "grantTypes", "ipv4Addr", "ipv6Addr", "port", "securityMethods"}
	versionMembers              = []string{"apiVersion", "custOperations", "expiry", "resources"}
)

// registryPlaces is the shape of a registry document. The registry's own objects take exactly
// the JSON members of their Go types.
var registryPlaces = &place{
	members: jsonMembers(reflect.TypeFor[security.RegistryDoc]()),
	children: map[string]*place{
		"apiInvokers": {elements: true, members: jsonMembers(reflect.TypeFor[security.InvokerRecord]())},
		"aefs":        {elements: true, members: jsonMembers(reflect.TypeFor[security.AEFRecord]())},
		"serviceApis": {elements: true, members: set(serviceAPIDescriptionMembers), children: map[string]*place{
			"aefProfiles": {elements: true, members: set(aefProfileMembers), children: map[string]*place{
				"interfaceDescriptions": {elements: true, members: set(interfaceDescriptionMembers), children: map[string]*place{
					"securityMethods": securityMethods,
				}},
				"versions":        {elements: true, members: set(versionMembers)},
				"securityMethods": securityMethods,
			}},
		}},
	},
}

func set(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func jsonMembers(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}

// valueAt is where a value starts and its JSON path.
type valueAt struct {
	off  int
	path string
}

// checkMembers walks the document once: syntax errors and members not allowed at their place are
// refused; every value's start is recorded (in document order) to place type errors.
func checkMembers(b []byte, vals *[]valueAt) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return posError(b, int(se.Offset), "", "JSON syntax error: "+se.Error())
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return posError(b, len(b), "", "JSON syntax error: the document ends early")
		}
		return posError(b, int(dec.InputOffset()), "", err.Error())
	}
	// start skips the whitespace and separators before the next token.
	start := func() int {
		off := int(dec.InputOffset())
		for off < len(b) && strings.IndexByte(" \t\r\n,:", b[off]) >= 0 {
			off++
		}
		return off
	}
	var value func(path string, p *place, elem bool) error
	value = func(path string, p *place, elem bool) error {
		off := start()
		*vals = append(*vals, valueAt{off, path})
		tok, err := dec.Token()
		if err != nil {
			return syntax(err)
		}
		switch tok {
		case json.Delim('{'):
			if p != nil && p.elements != elem {
				p = nil // a type error, which json.Unmarshal names
			}
			for dec.More() {
				keyOff := start()
				k, err := dec.Token()
				if err != nil {
					return syntax(err)
				}
				key := k.(string)
				child := join(path, key)
				if p != nil && p.members != nil && !p.members[key] {
					return posError(b, keyOff, child, "unknown member "+fmt.Sprintf("%q", key)+" (accepted here: "+strings.Join(sortedNames(p.members), ", ")+")")
				}
				var next *place
				if p != nil {
					next = p.children[key]
				}
				if err := value(child, next, false); err != nil {
					return err
				}
			}
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := value(fmt.Sprintf("%s[%d]", path, i), p, true); err != nil {
					return err
				}
			}
		default:
			if v, ok := tok.(string); ok && p != nil && elem && p.values != nil && !slices.Contains(p.values, v) {
				return posError(b, off, path, fmt.Sprintf("%q is not one of %s", v, strings.Join(p.values, ", ")))
			}
			return nil
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return syntax(err)
		}
		return nil
	}
	if off := start(); off < len(b) && b[off] != '{' {
		return posError(b, off, "", "a registry document is a JSON object")
	}
	if err := value("", registryPlaces, false); err != nil {
		return err
	}
	if rest := bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return posError(b, len(b)-len(rest), "", "JSON syntax error: data after the document")
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedNames(m map[string]bool) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
