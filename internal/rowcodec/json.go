package rowcodec

import "encoding/json"

// AppendJSONValue appends a value produced by rowcodec: nil, json.Number
// or string.
func AppendJSONValue(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case json.Number:
		return append(buf, x...)
	case string:
		return AppendJSONString(buf, x)
	}
	b, _ := json.Marshal(v)
	return append(buf, b...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. s is valid UTF-8 (rowcodec
// guarantees it); only quotes, backslashes and control characters are
// escaped.
func AppendJSONString[S ~string | ~[]byte](buf []byte, s S) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
