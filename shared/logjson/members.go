package logjson

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"unicode/utf8"
)

// Members is pre-encoded JSON object members, `"a":1,"b":"x"`, without braces. Build it with
// its methods (each returns the extended value, like append) or with AppendString and
// AppendFloat for a value of JSON (Raw); the zero value is empty.
type Members []byte

// String adds the member key: v.
func (m Members) String(key, v string) Members {
	m = m.key(key)
	return Members(AppendString(m, v))
}

// Int adds the member key: v.
func (m Members) Int(key string, v int64) Members {
	m = m.key(key)
	return strconv.AppendInt(m, v, 10)
}

// Float adds the member key: v, written as encoding/json writes a float64 (null for NaN and
// ±Inf, which JSON cannot hold).
func (m Members) Float(key string, v float64) Members {
	m = m.key(key)
	return Members(AppendFloat(m, v))
}

// Raw adds the member key: v, where v is one compact JSON value written with AppendString,
// AppendFloat and strconv.AppendInt.
func (m Members) Raw(key string, v []byte) Members {
	m = m.key(key)
	return append(m, v...)
}

// Key adds `key:` alone: the caller appends exactly one compact JSON value next, as for Raw,
// without building it elsewhere first.
func (m Members) Key(key string) Members { return m.key(key) }

func (m Members) key(k string) Members {
	if len(m) > 0 {
		m = append(m, ',')
	}
	m = Members(AppendString(m, k))
	return append(m, ':')
}

// Attr is m as an attribute of a record: its members become members of the line.
func (m Members) Attr() slog.Attr { return slog.Any("", m) }

// LogValue is m as ordinary attributes for handlers other than New's: an inlined group whose
// members render as m's bytes do (objects as groups, arrays as json.RawMessage, numbers as
// int64 or float64).
func (m Members) LogValue() slog.Value {
	attrs, err := decodeMembers(append(append([]byte{'{'}, m...), '}'))
	if err != nil {
		return slog.GroupValue(slog.String("logjsonError", err.Error()))
	}
	return slog.GroupValue(attrs...)
}

func decodeMembers(obj []byte) ([]slog.Attr, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, err
	}
	var attrs []slog.Attr
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		v, err := decodeValue(raw)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: v})
	}
	return attrs, nil
}

func decodeValue(raw json.RawMessage) (slog.Value, error) {
	switch raw[0] {
	case '{':
		attrs, err := decodeMembers(raw)
		return slog.GroupValue(attrs...), err
	case '[':
		return slog.AnyValue(raw), nil
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return slog.StringValue(s), err
	case 't', 'f':
		return slog.BoolValue(raw[0] == 't'), nil
	case 'n':
		return slog.AnyValue(nil), nil
	}
	if bytes.ContainsAny(raw, ".eE") {
		f, err := strconv.ParseFloat(string(raw), 64)
		return slog.Float64Value(f), err
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return slog.Int64Value(n), nil
	}
	return slog.AnyValue(json.Number(raw)), nil
}

// AppendString appends s as a JSON string with slog.JSONHandler's escaping (no HTML escaping;
// U+2028 and U+2029 escaped), except that a byte of invalid UTF-8 becomes U+FFFD itself rather
// than the escape \ufffd: decoded and written again by slog, the string is the same bytes.
func AppendString(dst []byte, s string) []byte {
	return appendString(dst, s, "\uFFFD")
}

// appendString is slog.JSONHandler's string encoding, with invalid for each invalid byte.
func appendString(dst []byte, s, invalid string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
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
