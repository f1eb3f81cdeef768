// Package amf0 encodes and decodes the AMF0 values that FLV metadata and
// RTMP commands use: numbers, booleans, strings, null, objects and ECMA
// arrays.
package amf0

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Type markers.
const (
	markerNumber    = 0x00
	markerBool      = 0x01
	markerString    = 0x02
	markerObject    = 0x03
	markerNull      = 0x05
	markerUndefined = 0x06
	markerECMAArray = 0x08
	markerObjectEnd = 0x09
	markerStrict    = 0x0a
	markerLong      = 0x0c
)

// Property is one key of an object, kept in order.
type Property struct {
	Key   string
	Value any
}

// Object is an AMF0 object with ordered properties.
type Object []Property

// ECMAArray is an AMF0 associative array (FLV's onMetaData uses one).
type ECMAArray []Property

// Get returns the value of key, or nil.
func (o Object) Get(key string) any {
	for _, p := range o {
		if p.Key == key {
			return p.Value
		}
	}
	return nil
}

// Append encodes values after b. Supported: float64, int, uint32, bool,
// string, nil, Object, ECMAArray.
func Append(b []byte, values ...any) ([]byte, error) {
	for _, v := range values {
		var err error
		if b, err = appendValue(b, v); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

func appendProps(b []byte, props []Property) ([]byte, error) {
	for _, p := range props {
		b = appendString(b, p.Key)
		var err error
		if b, err = appendValue(b, p.Value); err != nil {
			return nil, err
		}
	}
	return append(b, 0, 0, markerObjectEnd), nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case float64:
		return binary.BigEndian.AppendUint64(append(b, markerNumber), math.Float64bits(v)), nil
	case int:
		return appendValue(b, float64(v))
	case uint32:
		return appendValue(b, float64(v))
	case bool:
		if v {
			return append(b, markerBool, 1), nil
		}
		return append(b, markerBool, 0), nil
	case string:
		if len(v) > 0xffff {
			return nil, errors.New("amf0: long strings are not supported")
		}
		return appendString(append(b, markerString), v), nil
	case nil:
		return append(b, markerNull), nil
	case Object:
		return appendProps(append(b, markerObject), v)
	case ECMAArray:
		b = binary.BigEndian.AppendUint32(append(b, markerECMAArray), uint32(len(v)))
		return appendProps(b, v)
	}
	return nil, fmt.Errorf("amf0: cannot encode %T", v)
}

var errShort = errors.New("amf0: truncated value")

// Decode reads every value in b. Objects and ECMA arrays decode to Object.
func Decode(b []byte) ([]any, error) {
	var out []any
	for len(b) > 0 {
		v, n, err := decodeValue(b, 0)
		if err != nil {
			return out, err
		}
		out = append(out, v)
		b = b[n:]
	}
	return out, nil
}

func decodeString(b []byte) (string, int, error) {
	if len(b) < 2 {
		return "", 0, errShort
	}
	l := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+l {
		return "", 0, errShort
	}
	return string(b[2 : 2+l]), 2 + l, nil
}

func decodeProps(b []byte, depth int) (Object, int, error) {
	var o Object
	n := 0
	for {
		if len(b[n:]) >= 3 && b[n] == 0 && b[n+1] == 0 && b[n+2] == markerObjectEnd {
			return o, n + 3, nil
		}
		k, kn, err := decodeString(b[n:])
		if err != nil {
			return nil, 0, err
		}
		n += kn
		v, vn, err := decodeValue(b[n:], depth+1)
		if err != nil {
			return nil, 0, err
		}
		n += vn
		o = append(o, Property{k, v})
	}
}

func decodeValue(b []byte, depth int) (any, int, error) {
	if len(b) < 1 {
		return nil, 0, errShort
	}
	if depth > 16 {
		return nil, 0, errors.New("amf0: nested too deep")
	}
	switch b[0] {
	case markerNumber:
		if len(b) < 9 {
			return nil, 0, errShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b[1:])), 9, nil
	case markerBool:
		if len(b) < 2 {
			return nil, 0, errShort
		}
		return b[1] != 0, 2, nil
	case markerString:
		s, n, err := decodeString(b[1:])
		return s, 1 + n, err
	case markerLong:
		if len(b) < 5 {
			return nil, 0, errShort
		}
		l := int(binary.BigEndian.Uint32(b[1:]))
		if l > len(b)-5 {
			return nil, 0, errShort
		}
		return string(b[5 : 5+l]), 5 + l, nil
	case markerNull, markerUndefined:
		return nil, 1, nil
	case markerObject:
		o, n, err := decodeProps(b[1:], depth)
		return o, 1 + n, err
	case markerECMAArray:
		if len(b) < 5 {
			return nil, 0, errShort
		}
		o, n, err := decodeProps(b[5:], depth)
		return o, 5 + n, err
	case markerStrict:
		if len(b) < 5 {
			return nil, 0, errShort
		}
		cnt := int(binary.BigEndian.Uint32(b[1:]))
		n := 5
		var arr []any
		for i := 0; i < cnt; i++ {
			v, vn, err := decodeValue(b[n:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			arr = append(arr, v)
			n += vn
		}
		return arr, n, nil
	}
	return nil, 0, fmt.Errorf("amf0: unsupported type marker 0x%02x", b[0])
}
