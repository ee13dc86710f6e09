package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

// worstBodies are bodies near MaxBody that once cost seconds and gigabytes (deep nesting, wide
// arrays, with a type error at the end), and the largest body that decodes.
func worstBodies() map[string][]byte {
	fill := func(prefix, unit, suffix string) []byte {
		n := (MaxBody - len(prefix) - len(suffix)) / len(unit)
		return []byte(prefix + strings.Repeat(unit, n) + suffix)
	}
	nested := strings.Repeat("[", MaxJSONDepth-2)
	closed := strings.Repeat("]", MaxJSONDepth-2)
	return map[string][]byte{
		// The reported attack: 9,000 × '[' then 400,000 × '1,' — refused at the depth bound.
		"deep-then-wide": []byte(`{"securityInfo":` + strings.Repeat("[", 9000) + strings.Repeat("1,", 400000) + "1" + strings.Repeat("]", 9000) + "}"),
		// Within every bound: as deep as allowed, arrays as wide as allowed, a type error last.
		"deep-wide-type-error": []byte(`{"securityInfo":[` + strings.Repeat(`{"prefSecurityMethods":["PSK"]},`, MaxJSONElements-1) + `{"aefId":` + nested + "1" + closed + `}]}`),
		// One big string: the largest body that decodes into ServiceSecurity (ignored member).
		"one-string": fill(`{"x":"`, "a", `"}`),
		// Many small objects spread over levels (each array at the element bound).
		"wide-objects": fill(`{"x":[`, `[{"a":1,"b":[1,2,3]},{"c":"d"}],`, `0]}`),
	}
}

// BenchmarkDecodeWorstBody: any body within MaxBody is accepted or refused in milliseconds and
// in memory proportional to its size (budget: ≤ 5 ms per 1 MiB body).
func BenchmarkDecodeWorstBody(b *testing.B) {
	for name, body := range worstBodies() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPut, "/x", bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				var v capif.ServiceSecurity
				_ = decodeJSON(r, &v)
			}
		})
	}
}

// Every worst body gets a 4xx answer (the bound refuses most of them; none is a 5xx).
func TestWorstBodiesAreRefusedOrDecoded(t *testing.T) {
	for name, body := range worstBodies() {
		r := httptest.NewRequest(http.MethodPut, "/x", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var v capif.ServiceSecurity
		err := decodeJSON(r, &v)
		if name == "one-string" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if e, ok := err.(*requestError); !ok || e.status != http.StatusBadRequest {
			t.Errorf("%s: %v, want a 400", name, err)
		}
	}
}
