// Package jsonenc appends JSON without reflection, for the few documents written on every
// request (the access log line, token claims, the token response), where encoding/json's
// reflection and its output validation cost more than the rest of the work.
//
// Contract: every function appends one compact JSON value that encoding/json decodes to the
// value given (strings with invalid UTF-8 decode with U+FFFD in each bad byte's place); strings
// are escaped as slog.JSONHandler escapes them (no HTML escaping; U+2028 and U+2029 escaped);
// floats are written as encoding/json writes them.
package jsonenc

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendString appends s as a JSON string with slog.JSONHandler's escaping (no HTML escaping;
// U+2028 and U+2029 escaped), except that a byte of invalid UTF-8 becomes U+FFFD itself rather
// than the escape \ufffd: decoded and written again by slog, the string is the same bytes.
func AppendString(dst []byte, s string) []byte {
	return AppendStringReplacing(dst, s, "\uFFFD")
}

// AppendStringReplacing is AppendString writing invalid for each byte of invalid UTF-8
// (slog.JSONHandler writes the escape `\ufffd`).
func AppendStringReplacing(dst []byte, s, invalid string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight plain bytes at a time: tokens and ids are long runs of them.
		for i+8 <= len(s) && plain8(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
			uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
			i += 8
		}
		if i == len(s) {
			break
		}
		b := s[i]
		if b >= 0x20 && b != '"' && b != '\\' && b < utf8.RuneSelf {
			i++
			continue
		}
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, invalid...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// plain8 reports whether all eight bytes of w are plain: ASCII, not a control character, not
// '"' and not '\\' (the bit tricks of "Bit Twiddling Hacks": a byte below n, a zero byte).
func plain8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := func(w uint64, n uint64) uint64 { return (w - ones*n) & ^w & highs } // exact for ASCII w
	return w&highs == 0 && below(w, 0x20) == 0 && below(w^(ones*'"'), 1) == 0 && below(w^(ones*'\\'), 1) == 0
}

// AppendFloat appends f as encoding/json writes a float64: the shortest decimal that reads back
// as f, in exponent form below 1e-6 and from 1e21 on; null for NaN and ±Inf.
func AppendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// encoding/json writes e-7, not e-07.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}
