package jsonenc

import (
	"encoding/json"
	"math"
	"strings"
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

func TestPlain8(t *testing.T) {
	for b := range 256 {
		plain := b >= 0x20 && b < 0x80 && b != '"' && b != '\\'
		for pos := range 8 {
			w := uint64(0x4141414141414141) &^ (0xff << (8 * pos)) // 'A's, one byte replaced
			w |= uint64(b) << (8 * pos)
			if plain8(w) != plain {
				t.Fatalf("plain8 with byte %#x at %d = %v, want %v", b, pos, !plain, plain)
			}
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\n\r\t\x00\x1f\x7f", "<&>", "\xff\xfe", "\u2028\u2029", "é🎉", "\xed\xa0\x80", "\xc3", "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJjY2YifQ.sig\"x\nyz", "0123456\x00789abcdef\x80"} {
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

func BenchmarkAppendString(b *testing.B) {
	s := strings.Repeat("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0", 16)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}
