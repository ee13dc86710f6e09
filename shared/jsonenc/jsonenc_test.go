package jsonenc

import (
	"encoding/json"
	"math"
	"testing"
)

func TestAppendFloatIsEncodingJSONs(t *testing.T) {
	for _, f := range []float64{0, 3, -3, 0.045, 1e-7, 9.999e-7, 1e-6, 1e20, 1e21, 1.25e-10, -4.5e22, 100.25,
		math.SmallestNonzeroFloat64, math.MaxFloat64} {
		want, _ := json.Marshal(f)
		if got := AppendFloat(nil, f); string(got) != string(want) {
			t.Errorf("AppendFloat(%v) = %s, want %s", f, got, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := AppendFloat(nil, f); string(got) != "null" {
			t.Errorf("AppendFloat(%v) = %s, want null", f, got)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\n\r\t\x00\x1f\x7f", "<&>", "\xff\xfe", "\u2028\u2029", "é🎉", "\xed\xa0\x80", "\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString([]byte("x"), s)[1:]
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %s: %v", s, b, err)
		}
		if want := string([]rune(s)); got != want { // each invalid byte reads as U+FFFD
			t.Errorf("%q: decoded %q, want %q", s, got, want)
		}
	})
}
