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
		buf = appendEscape(buf, c)
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// appendEscape appends the JSON escape of c: a quote, a backslash or a
// control character.
func appendEscape(buf []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(buf, '\\', c)
	case '\n':
		return append(buf, '\\', 'n')
	case '\r':
		return append(buf, '\\', 'r')
	case '\t':
		return append(buf, '\\', 't')
	}
	return append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
