package logjson

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"

	"github.com/capifcore/capif-security/shared/jsonenc"
)

// Members is pre-encoded JSON object members, `"a":1,"b":"x"`, without braces. Build it with
// its methods (each returns the extended value, like append), writing a JSON value for Raw or
// after Key with shared/jsonenc; the zero value is empty.
type Members []byte

// String adds the member key: v.
func (m Members) String(key, v string) Members {
	m = m.key(key)
	return Members(jsonenc.AppendString(m, v))
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
	return Members(jsonenc.AppendFloat(m, v))
}

// Raw adds the member key: v, where v is one compact JSON value written with jsonenc and
// strconv.AppendInt, with no empty object in it (a stock handler, rendering
// through LogValue, would compact the one and drop the other).
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
	m = Members(jsonenc.AppendString(m, k))
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
	if bytes.ContainsAny(raw, ".eE") || string(raw) == "-0" { // -0 is a float's: jsonenc.AppendFloat(-0)
		f, err := strconv.ParseFloat(string(raw), 64)
		return slog.Float64Value(f), err
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return slog.Int64Value(n), nil
	}
	return slog.AnyValue(json.Number(raw)), nil
}
