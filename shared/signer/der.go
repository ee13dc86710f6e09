package signer

import (
	"bytes"
	"crypto/elliptic"
	"errors"
)

// errBadDER is returned for anything that is not a strict DER ECDSA-Sig-Value for P-256.
var errBadDER = errors.New("signer: malformed DER ECDSA signature")

// p256Order is n, the order of the P-256 base point, big-endian in 32 bytes. A valid signature
// has 0 < r, s < n.
var p256Order = elliptic.P256().Params().N.FillBytes(make([]byte, coordSize))

// derToJOSE converts an ASN.1 DER ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) into the
// JWS form R‖S, each left-padded to 32 bytes (RFC 7518 §3.4).
//
// The parser is strict rather than lenient: a P-256 signature always fits the short length form
// (at most 2+2·(2+33) = 72 bytes), so long forms, non-minimal integers, negative or
// out-of-range values and trailing bytes all mean the key answered something it should not have.
func derToJOSE(der []byte) (out [2 * coordSize]byte, err error) {
	if len(der) < 2 || der[0] != 0x30 || der[1] >= 0x80 || int(der[1]) != len(der)-2 {
		return out, errBadDER
	}
	body := der[2:]
	r, body, err := derInteger(body)
	if err != nil {
		return out, err
	}
	s, body, err := derInteger(body)
	if err != nil {
		return out, err
	}
	if len(body) != 0 {
		return out, errBadDER
	}
	copy(out[coordSize-len(r):coordSize], r)
	copy(out[2*coordSize-len(s):], s)
	if !inRange(out[:coordSize]) || !inRange(out[coordSize:]) {
		return [2 * coordSize]byte{}, errBadDER
	}
	return out, nil
}

// derInteger reads one positive, minimally encoded INTEGER of at most 32 magnitude bytes and
// returns its magnitude without the sign-padding zero, plus what follows it.
func derInteger(b []byte) (magnitude, rest []byte, err error) {
	if len(b) < 2 || b[0] != 0x02 || b[1] >= 0x80 {
		return nil, nil, errBadDER
	}
	n := int(b[1])
	if n == 0 || len(b) < 2+n {
		return nil, nil, errBadDER
	}
	v := b[2 : 2+n]
	switch {
	case v[0]&0x80 != 0: // negative
		return nil, nil, errBadDER
	case v[0] == 0 && n > 1 && v[1]&0x80 == 0: // a leading zero that is not sign padding
		return nil, nil, errBadDER
	}
	if v[0] == 0 {
		v = v[1:]
	}
	if len(v) > coordSize {
		return nil, nil, errBadDER
	}
	return v, b[2+n:], nil
}

// inRange reports 0 < v < n for a 32-byte big-endian v.
func inRange(v []byte) bool {
	return bytes.Compare(v, p256Order) < 0 && !allZero(v)
}

func allZero(v []byte) bool {
	for _, c := range v {
		if c != 0 {
			return false
		}
	}
	return true
}
