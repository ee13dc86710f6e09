package registrydoc

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
	doc, err := Read(path)
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
	if err := Parse(b, &doc); err != nil {
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
		{name: "unknown top-level member", doc: `{"apiInvokers": [], "services": []}`, path: "services", line: 1, col: 21, wantReason: `unknown member "services"`},
		{name: "unknown invoker member", doc: "{\"apiInvokers\": [\n  {\"apiInvokerId\": \"i\", \"notificationDestinaton\": \"http://x\"}]}", path: "apiInvokers[0].notificationDestinaton", line: 2, col: 25, wantReason: "unknown member"},
		{name: "unknown AEF member", doc: `{"aefs": [{"aefId": "a"}, {"aefID": "b"}]}`, path: "aefs[1].aefID", line: 1, col: 28, wantReason: "unknown member"},
		{name: "undefined service API member", doc: `{"serviceApis": [{"apiName": "n", "apiname": "m"}]}`, path: "serviceApis[0].apiname", line: 1, col: 35, wantReason: "unknown member"},
		{name: "undefined AEF profile member", doc: `{"serviceApis": [{"aefProfiles": [{"aefId": "a", "version": []}]}]}`, path: "serviceApis[0].aefProfiles[0].version", line: 1, col: 50, wantReason: "unknown member"},
		{name: "undefined interface member", doc: `{"serviceApis": [{"aefProfiles": [{"interfaceDescriptions": [{"host": "h"}]}]}]}`, path: "serviceApis[0].aefProfiles[0].interfaceDescriptions[0].host", line: 1, col: 63, wantReason: "unknown member"},
		{name: "undefined version member", doc: `{"serviceApis": [{"aefProfiles": [{"versions": [{"apiVersion": "v1", "expires": "x"}]}]}]}`, path: "serviceApis[0].aefProfiles[0].versions[0].expires", line: 1, col: 70, wantReason: "unknown member"},
		{name: "wrong type: string for an integer", doc: "{\"serviceApis\": [{\"aefProfiles\": [{\"interfaceDescriptions\": [\n{\"port\": \"443\"}]}]}]}", path: "serviceApis[0].aefProfiles[0].interfaceDescriptions[0].port", line: 2, col: 10, wantReason: "a JSON string where an integer is expected"},
		{name: "wrong type: object for an array", doc: `{"apiInvokers": {"apiInvokerId": "i"}}`, path: "apiInvokers", line: 1, col: 17, wantReason: "a JSON object where an array is expected"},
		{name: "wrong type: number for a string", doc: `{"aefs": [{"aefId": 7}]}`, path: "aefs[0].aefId", line: 1, col: 21, wantReason: "a JSON number where a string is expected"},
		{name: "a typo in a profile's securityMethods", doc: "{\"serviceApis\": [{\"aefProfiles\": [\n  {\"aefId\": \"a\", \"securityMethods\": [\"PKI\", \"OAUHT\"]}]}]}", path: "serviceApis[0].aefProfiles[0].securityMethods[1]", line: 2, col: 45, wantReason: `"OAUHT" is not one of PSK, PKI, OAUTH`},
		{name: "a typo in an interface's securityMethods", doc: `{"serviceApis": [{"aefProfiles": [{"interfaceDescriptions": [{"fqdn": "a.example.com", "securityMethods": ["oauth"]}]}]}]}`, path: "serviceApis[0].aefProfiles[0].interfaceDescriptions[0].securityMethods[0]", line: 1, col: 108, wantReason: `"oauth" is not one of PSK, PKI, OAUTH`},
		{name: "syntax error", doc: "{\"aefs\": [\n  {\"aefId\": \"a\"},\n]}", line: 3, col: 1, wantReason: "JSON syntax error"},
		{name: "truncated", doc: `{"aefs": [`, line: 1, col: 11, wantReason: "ends early"},
		{name: "not an object", doc: `[]`, line: 1, col: 1, wantReason: "a registry document is a JSON object"},
		{name: "data after the document", doc: `{} {}`, line: 1, col: 4, wantReason: "data after the document"},
		{name: "a separator after the document", doc: "{}\n,", line: 2, col: 1, wantReason: "data after the document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc security.RegistryDoc
			err := Parse([]byte(tc.doc), &doc)
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
	if _, err := Read(missing); err == nil || !strings.Contains(err.Error(), "registry file "+missing+" does not exist") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"aefs": [{"aefId": "a", "x": 1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(bad); err == nil || !strings.HasPrefix(err.Error(), "registry "+bad+":1:26: aefs[0].x: unknown member") {
		t.Errorf("bad file: %v", err)
	}
}
