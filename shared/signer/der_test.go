package signer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"testing"
)

// derOf encodes r and s with encoding/asn1, an encoder independent of the parser under test.
func derOf(t *testing.T, r, s *big.Int) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func hexInt(t *testing.T, h string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(h, 16)
	if !ok {
		t.Fatalf("bad hex %q", h)
	}
	return v
}

func TestDERToJOSEValid(t *testing.T) {
	n := elliptic.P256().Params().N
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	high := hexInt(t, "ff"+string(bytes.Repeat([]byte("ee"), 31))) // 32 bytes, top bit set: DER adds a 0x00
	short := hexInt(t, string(bytes.Repeat([]byte("7a"), 30)))     // 30 bytes: needs 2 bytes of padding
	tests := []struct {
		name string
		r, s *big.Int
	}{
		{"smallest values", big.NewInt(1), big.NewInt(1)},
		{"short r", short, high},
		{"short s", high, short},
		{"both with sign padding", high, high},
		{"largest values", nMinus1, nMinus1},
		{"one-byte r, 31-byte s", big.NewInt(0x42), hexInt(t, string(bytes.Repeat([]byte("01"), 31)))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := derToJOSE(derOf(t, tc.r, tc.s))
			if err != nil {
				t.Fatalf("derToJOSE: %v", err)
			}
			if r := new(big.Int).SetBytes(got[:32]); r.Cmp(tc.r) != 0 {
				t.Errorf("R = %x, want %x", r, tc.r)
			}
			if s := new(big.Int).SetBytes(got[32:]); s.Cmp(tc.s) != 0 {
				t.Errorf("S = %x, want %x", s, tc.s)
			}
		})
	}
}

func TestDERToJOSEMalformed(t *testing.T) {
	one := []byte{0x02, 0x01, 0x01}
	seq := func(parts ...[]byte) []byte {
		body := bytes.Join(parts, nil)
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	n := elliptic.P256().Params().N
	tooBig := derOf(t, n, big.NewInt(1))
	tests := []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"only a tag", []byte{0x30}},
		{"not a sequence", append([]byte{0x31, 0x06}, append(one, one...)...)},
		{"sequence length too long", append([]byte{0x30, 0x07}, append(one, one...)...)},
		{"sequence length too short", append([]byte{0x30, 0x05}, append(one, one...)...)},
		{"long-form sequence length", append([]byte{0x30, 0x81, 0x06}, append(one, one...)...)},
		{"bytes after the sequence", append(seq(one, one), 0x00)},
		{"one integer", seq(one)},
		{"three integers", seq(one, one, one)},
		{"bytes after s", seq(one, one, []byte{0x00})},
		{"not an integer", seq([]byte{0x04, 0x01, 0x01}, one)},
		{"empty integer", seq([]byte{0x02, 0x00}, one)},
		{"truncated integer", seq([]byte{0x02, 0x02, 0x01})},
		{"negative r", seq([]byte{0x02, 0x01, 0x80}, one)},
		{"non-minimal r", seq([]byte{0x02, 0x02, 0x00, 0x01}, one)},
		{"zero s", seq(one, []byte{0x02, 0x01, 0x00})},
		{"33-byte magnitude", seq(append([]byte{0x02, 0x21, 0x01}, make([]byte, 32)...), one)},
		{"r equal to the group order", tooBig},
		{"s equal to the group order", derOf(t, big.NewInt(1), n)},
		{"JOSE form instead of DER", bytes.Repeat([]byte{0x11}, 64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := derToJOSE(tc.der); err == nil {
				t.Fatalf("derToJOSE(% x) = %x, want an error", tc.der, got)
			}
		})
	}
}

// Real signatures from crypto/ecdsa must survive the conversion and still verify as (r, s).
// About 1 in 128 has a short r or s, so this also exercises padding on real data.
func TestDERToJOSEWithRealSignatures(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("signing input"))
	for i := range 500 {
		der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		jose, err := derToJOSE(der)
		if err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
		r, s := new(big.Int).SetBytes(jose[:32]), new(big.Int).SetBytes(jose[32:])
		if !ecdsa.Verify(&key.PublicKey, digest[:], r, s) {
			t.Fatalf("signature %d does not verify after conversion", i)
		}
	}
}
