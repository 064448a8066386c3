package sdk

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// QuoteIdent backtick-quotes an identifier, doubling backticks inside it.
func QuoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// QuoteString returns a SQL literal for UTF-8 text that means the same
// whatever the target's sql_mode (NO_BACKSLASH_ESCAPES included) and
// connection character set: plain '…' for printable ASCII without
// backslashes, _utf8mb4'…' for other printable text, and _utf8mb4 X'…' when
// the text holds a backslash or control character.
func QuoteString(s string) string {
	ascii, plain := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			ascii = false
		}
		if c < 0x20 || c == 0x7F || c == '\\' {
			plain = false
			break
		}
	}
	if !plain {
		return "_utf8mb4 X'" + hex.EncodeToString([]byte(s)) + "'"
	}
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if ascii {
		return q
	}
	return "_utf8mb4" + q
}

// QuoteBytes returns a hexadecimal SQL literal for arbitrary bytes.
func QuoteBytes(b []byte) string {
	if len(b) == 0 {
		return "''"
	}
	return "X'" + hex.EncodeToString(b) + "'"
}

// Literal returns the SQL literal of value v of column c, v in the JSON
// encoding of docs/events.md (as [DecodeEvent] returns it: nil,
// [json.Number] or string). It is the literal capture writes into
// [Event.SQL], so statements built from an event's values equal the ones
// capture builds. A value that does not fit the column's type (a string
// where digits belong, invalid base64) is an error, never a literal.
func Literal(c Column, v any) (string, error) {
	if v == nil {
		return "NULL", nil
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = string(x)
	case float64: // decoded without json.Decoder.UseNumber
		s = strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return "", fmt.Errorf("column %s (%s): value of Go type %T", c.Name, c.Type, v)
	}
	kind, _, _ := strings.Cut(c.Type, "(")
	kind, _, _ = strings.Cut(kind, " ")
	switch kind {
	case "tinyint", "smallint", "mediumint", "int", "bigint", "year", "decimal", "float", "double", "bit":
		if !isNumber(s) {
			return "", fmt.Errorf("column %s (%s): %q is not a number", c.Name, c.Type, s)
		}
		return s, nil
	case "date", "datetime", "timestamp", "time":
		if strings.Trim(s, "0123456789-:. ") != "" {
			return "", fmt.Errorf("column %s (%s): %q is not a date or time", c.Name, c.Type, s)
		}
		return "'" + s + "'", nil
	case "geometry", "vector":
		return bytesLiteral(c, s)
	}
	if c.Charset == "binary" {
		return bytesLiteral(c, s)
	}
	return QuoteString(s), nil
}

func bytesLiteral(c Column, s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("column %s (%s): bytes are not base64: %v", c.Name, c.Type, err)
	}
	return QuoteBytes(b), nil
}

// isNumber reports whether s is a decimal or floating-point number as
// MySQL writes one: an optional sign, digits, an optional fraction and
// exponent.
func isNumber(s string) bool {
	if s == "" {
		return false
	}
	digits := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = true
		case c == '-' || c == '+':
			if i != 0 && s[i-1] != 'e' && s[i-1] != 'E' {
				return false
			}
		case c == '.' || c == 'e' || c == 'E':
		default:
			return false
		}
	}
	return digits
}
