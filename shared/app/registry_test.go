package app

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/security"
)

// Every member examples/registry.json uses, at every depth, is accepted, and the document decodes.
func TestReadRegistryAcceptsTheExample(t *testing.T) {
	path := filepath.Join(testenv.RepoRoot(), "examples", "registry.json")
	doc, err := ReadRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.APIInvokers) != 2 || len(doc.AEFs) != 2 || len(doc.ServiceAPIs) != 3 || doc.ServiceAPIs[0].AefProfiles[0].InterfaceDescriptions[0].Fqdn != "aef1.example.com" {
		t.Errorf("decoded %+v", doc)
	}
	// Each member name of the example, put alone (with a value of the right shape) at its place,
	// is accepted on its own too: no member passes only because another one came first.
	b, _ := os.ReadFile(path)
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var names []string
	var walk func(v any, p *place)
	walk = func(v any, p *place) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if p == nil || p.members == nil {
					continue
				}
				names = append(names, k)
				if !p.members[k] {
					t.Errorf("member %q of the example is not accepted", k)
				}
				walk(child, p.children[k])
			}
		case []any:
			for _, e := range v {
				walk(e, p)
			}
		}
	}
	walk(raw, registryPlaces)
	for _, want := range []string{"versions", "apiVersion", "onboardingSecret", "interfaceDescriptions", "domainName"} {
		if !slices.Contains(names, want) {
			t.Errorf("the walk missed %q: %v", want, names)
		}
	}
}

// Every member the Publish_Service_API schemas define is accepted in serviceApis[].
func TestParseRegistryAcceptsEverySpecMember(t *testing.T) {
	obj := func(names []string, override map[string]any) map[string]any {
		m := map[string]any{}
		for _, n := range names {
			m[n] = "x"
		}
		for k, v := range override {
			m[k] = v
		}
		return m
	}
	ifc := obj(interfaceDescriptionMembers, map[string]any{"port": 443, "securityMethods": []string{"PKI"}})
	ver := obj(versionMembers, nil)
	prof := obj(aefProfileMembers, map[string]any{"interfaceDescriptions": []any{ifc}, "versions": []any{ver}, "securityMethods": []string{"PKI"}})
	api := obj(serviceAPIDescriptionMembers, map[string]any{"aefProfiles": []any{prof}})
	b, _ := json.Marshal(map[string]any{"serviceApis": []any{api}})
	var doc security.RegistryDoc
	if err := ParseRegistry(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
}

// The member lists are the union of the Rel-18 and Rel-19 schemas.
func TestSpecMembers(t *testing.T) {
	dir := testenv.SpecDir(t)
	union := map[string]map[string]bool{}
	for _, f := range []string{"TS29222_CAPIF_Publish_Service_API.yaml", filepath.Join("rel19", "TS29222_CAPIF_Publish_Service_API.yaml")} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		var spec struct {
			Components struct {
				Schemas map[string]struct {
					Properties map[string]any `yaml:"properties"`
				} `yaml:"schemas"`
			} `yaml:"components"`
		}
		if err := yaml.Unmarshal(b, &spec); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, name := range []string{"ServiceAPIDescription", "AefProfile", "InterfaceDescription", "Version"} {
			s, ok := spec.Components.Schemas[name]
			if !ok || len(s.Properties) == 0 {
				t.Fatalf("%s: no schema %s", f, name)
			}
			if union[name] == nil {
				union[name] = map[string]bool{}
			}
			for p := range s.Properties {
				union[name][p] = true
			}
		}
	}
	for name, got := range map[string][]string{
		"ServiceAPIDescription": serviceAPIDescriptionMembers, "AefProfile": aefProfileMembers,
		"InterfaceDescription": interfaceDescriptionMembers, "Version": versionMembers,
	} {
		want := sortedNames(union[name])
		got = slices.Clone(got)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s members: have %q, the schemas define %q", name, got, want)
		}
	}
}

func TestParseRegistryRefusals(t *testing.T) {
	tests := []struct {
		name, doc  string
		path       string
		line, col  int
		wantReason string
	}{
		{"unknown top-level member", `{"apiInvokers": [], "services": []}`, "services", 1, 21, `unknown member "services"`},
		{"unknown invoker member", "{\"apiInvokers\": [\n  {\"apiInvokerId\": \"i\", \"notificationDestinaton\": \"http://x\"}]}",
			"apiInvokers[0].notificationDestinaton", 2, 25, "unknown member"},
		{"unknown AEF member", `{"aefs": [{"aefId": "a"}, {"aefID": "b"}]}`, "aefs[1].aefID", 1, 28, "unknown member"},
		{"undefined service API member", `{"serviceApis": [{"apiName": "n", "apiname": "m"}]}`, "serviceApis[0].apiname", 1, 35, "unknown member"},
		{"undefined AEF profile member", `{"serviceApis": [{"aefProfiles": [{"aefId": "a", "version": []}]}]}`,
			"serviceApis[0].aefProfiles[0].version", 1, 50, "unknown member"},
		{"undefined interface member", `{"serviceApis": [{"aefProfiles": [{"interfaceDescriptions": [{"host": "h"}]}]}]}`,
			"serviceApis[0].aefProfiles[0].interfaceDescriptions[0].host", 1, 63, "unknown member"},
		{"undefined version member", `{"serviceApis": [{"aefProfiles": [{"versions": [{"apiVersion": "v1", "expires": "x"}]}]}]}`,
			"serviceApis[0].aefProfiles[0].versions[0].expires", 1, 70, "unknown member"},
		{"wrong type: string for an integer", "{\"serviceApis\": [{\"aefProfiles\": [{\"interfaceDescriptions\": [\n{\"port\": \"443\"}]}]}]}",
			"serviceApis[0].aefProfiles[0].interfaceDescriptions[0].port", 2, 10, "a JSON string where an integer is expected"},
		{"wrong type: object for an array", `{"apiInvokers": {"apiInvokerId": "i"}}`, "apiInvokers", 1, 17, "a JSON object where an array is expected"},
		{"wrong type: number for a string", `{"aefs": [{"aefId": 7}]}`, "aefs[0].aefId", 1, 21, "a JSON number where a string is expected"},
		{"syntax error", "{\"aefs\": [\n  {\"aefId\": \"a\"},\n]}", "", 3, 1, "JSON syntax error"},
		{"truncated", `{"aefs": [`, "", 1, 11, "ends early"},
		{"not an object", `[]`, "", 1, 1, "a registry document is a JSON object"},
		{"data after the document", `{} {}`, "", 1, 4, "data after the document"},
		{"a separator after the document", "{}\n,", "", 2, 1, "data after the document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc security.RegistryDoc
			err := ParseRegistry([]byte(tc.doc), &doc)
			var re *RegistryError
			if !errors.As(err, &re) {
				t.Fatalf("error %v, want a *RegistryError", err)
			}
			if re.Path != tc.path || re.Line != tc.line || re.Column != tc.col || !strings.Contains(re.Reason, tc.wantReason) {
				t.Errorf("got %q (path %q, %d:%d), want path %q at %d:%d with %q", err, re.Path, re.Line, re.Column, tc.path, tc.line, tc.col, tc.wantReason)
			}
		})
	}
}

func TestReadRegistryNamesTheFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	if _, err := ReadRegistry(missing); err == nil || !strings.Contains(err.Error(), "registry file "+missing+" does not exist") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"aefs": [{"aefId": "a", "x": 1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRegistry(bad); err == nil || !strings.HasPrefix(err.Error(), "registry "+bad+":1:26: aefs[0].x: unknown member") {
		t.Errorf("bad file: %v", err)
	}
}
