// Package lambda holds the tests of the serverless packaging: template.yaml against the code
// (routes, build targets, IAM, table schemas), the events/ files, and the built bootstraps run
// under the Lambda Runtime Interface Emulator against DynamoDB Local and local-kms.
package lambda

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// repoRoot is the module root.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// template is template.yaml decoded with yaml.v3; short-form intrinsics (!Ref, !GetAtt, !Sub …)
// become their long JSON form ({"Ref": …}, {"Fn::GetAtt": […]}) so tests compare plain values.
type template struct {
	doc map[string]any
}

func loadTemplate(t testing.TB) *template {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	v, err := decodeNode(&n)
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		t.Fatal("template.yaml is not a mapping")
	}
	return &template{doc: doc}
}

func decodeNode(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		return decodeNode(n.Content[0])
	case yaml.AliasNode:
		return decodeNode(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			val, err := decodeNode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			val, err := decodeNode(c)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		v = l
	case yaml.ScalarNode:
		if custom(n.Tag) {
			v = n.Value // an intrinsic's scalar argument stays a string
		} else if err := n.Decode(&v); err != nil {
			return nil, err
		}
	}
	if !custom(n.Tag) {
		return v, nil
	}
	name := strings.TrimPrefix(n.Tag, "!")
	switch name {
	case "Ref", "Condition":
		return map[string]any{name: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			v = []any{res, attr}
		}
	}
	return map[string]any{"Fn::" + name: v}, nil
}

// custom reports a local tag (!Ref), not a YAML core one (!!str, !!int …).
func custom(tag string) bool { return strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!") }

func (tp *template) section(name string) map[string]any {
	m, _ := tp.doc[name].(map[string]any)
	return m
}

// resources of one type, by logical id.
func (tp *template) resources(typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range tp.section("Resources") {
		rm, _ := r.(map[string]any)
		if rm["Type"] == typ {
			out[id] = rm
		}
	}
	return out
}

func props(r map[string]any) map[string]any {
	p, _ := r["Properties"].(map[string]any)
	return p
}

// functionProps merges Globals.Function into a function's Properties the way SAM does: maps
// merge key by key (the function wins), anything else the function's value replaces.
func (tp *template) functionProps(r map[string]any) map[string]any {
	globals, _ := tp.section("Globals")["Function"].(map[string]any)
	return mergeSAM(globals, props(r))
}

func mergeSAM(global, local map[string]any) map[string]any {
	out := maps.Clone(global)
	if out == nil {
		out = map[string]any{}
	}
	for k, lv := range local {
		gm, gok := out[k].(map[string]any)
		lm, lok := lv.(map[string]any)
		if gok && lok && !isIntrinsic(lm) {
			out[k] = mergeSAM(gm, lm)
			continue
		}
		out[k] = lv
	}
	return out
}

func isIntrinsic(m map[string]any) bool {
	if len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

// path walks nested maps: path(m, "A", "B") is m["A"]["B"] (nil when absent).
func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func ref(name string) map[string]any { return map[string]any{"Ref": name} }

func getAtt(res, attr string) map[string]any {
	return map[string]any{"Fn::GetAtt": []any{res, attr}}
}

// strs turns a YAML list (or a single string) of strings into a sorted slice.
func strs(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = []string{v}
	case []any:
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
	}
	sort.Strings(out)
	return out
}

// refsIn lists every Ref and GetAtt target named anywhere inside v.
func refsIn(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["Ref"].(string); ok && len(v) == 1 {
				out = append(out, strings.Split(r, ".")[0])
			}
			if g, ok := v["Fn::GetAtt"].([]any); ok && len(g) > 0 {
				out = append(out, fmt.Sprint(g[0]))
			}
			if s, ok := v["Fn::Sub"]; ok {
				str, _ := s.(string)
				if l, ok := s.([]any); ok && len(l) > 0 {
					str, _ = l[0].(string)
				}
				for _, part := range strings.Split(str, "${")[1:] {
					name, _, _ := strings.Cut(part, "}")
					if !strings.HasPrefix(name, "AWS::") {
						out = append(out, strings.Split(name, ".")[0])
					}
				}
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k])
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}
