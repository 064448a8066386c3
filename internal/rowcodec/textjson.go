package rowcodec

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/databus/databus/internal/charset"
)

// TextJSON writes the JSON values (docs/events.md) of one column's
// text-protocol bytes, read as [FromText] expects: the same JSON as
// [Encode] of [FromText]'s value, without the Go value in between for the
// common types (integers, decimals, dates and times, text that is its own
// UTF-8, bytes). What depends only on the column is worked out once, by
// [NewTextJSON]; snapshots store rows this way, one TextJSON per column.
type TextJSON struct {
	c    *Column
	kind textKind
	// utf8 is set for text in a UTF-8 character set, which is verbatim
	// when valid; text in another one that keeps ASCII (ascii) is
	// verbatim when ASCII.
	utf8, ascii bool
	// trim drops a CHAR's trailing spaces (charFromText).
	trim bool
}

type textKind uint8

const (
	kindOther    textKind = iota // FromText, then Encode
	kindInt                      // a JSON number
	kindBigint                   // a JSON string of digits
	kindDecimal                  // a JSON string
	kindTemporal                 // a JSON string
	kindText                     // a JSON string, converted to UTF-8
	kindBytes                    // base64
)

// NewTextJSON returns the writer of c's values.
func NewTextJSON(c *Column) TextJSON {
	t := TextJSON{c: c}
	switch c.Type {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG:
		t.kind = kindInt
	case mysql.MYSQL_TYPE_LONGLONG:
		t.kind = kindBigint // BIGINT travels as a string (Encode)
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		t.kind = kindDecimal
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2,
		mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		t.kind = kindTemporal
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_STRING,
		mysql.MYSQL_TYPE_ENUM, mysql.MYSQL_TYPE_SET: // an ENUM or SET value is its text (FromText)
		t.trim = c.Type == mysql.MYSQL_TYPE_STRING && c.Charset != "binary" && charset.ASCIIBased(c.Charset)
		switch {
		case c.Charset == "binary" && c.Type != mysql.MYSQL_TYPE_ENUM && c.Type != mysql.MYSQL_TYPE_SET:
			t.kind = kindBytes
		case charset.IsUTF8(c.Charset):
			t.kind, t.utf8 = kindText, true
		case charset.KeepsASCII(c.Charset):
			t.kind, t.ascii = kindText, true
		default:
			t.kind = kindText
		}
	}
	return t
}

// Append appends the JSON value of raw, the column's text-protocol bytes
// (nil is NULL).
func (t *TextJSON) Append(buf, raw []byte) ([]byte, error) {
	if raw == nil {
		return append(buf, "null"...), nil
	}
	switch t.kind {
	case kindInt:
		if plainInt(raw) {
			return append(buf, raw...), nil
		}
	case kindBigint:
		if plainInt(raw) {
			return append(append(append(buf, '"'), raw...), '"'), nil
		}
	case kindDecimal:
		if plainDecimal(raw) {
			return append(append(append(buf, '"'), raw...), '"'), nil
		}
	case kindTemporal:
		if temporalText(raw) {
			return append(append(append(buf, '"'), raw...), '"'), nil
		}
	case kindBytes:
		buf = append(buf, '"')
		buf = base64.StdEncoding.AppendEncode(buf, raw)
		return append(buf, '"'), nil
	case kindText:
		if t.trim {
			raw = bytes.TrimRight(raw, " ")
		}
		if t.utf8 || t.ascii {
			if out, ok := appendVerbatim(buf, raw, t.utf8); ok {
				return out, nil
			}
		}
	}
	v, err := FromText(t.c, raw)
	if err != nil {
		return buf, err
	}
	ev, err := Encode(t.c, v)
	if err != nil {
		return buf, err
	}
	return AppendJSONValue(buf, ev.JSON), nil
}

// AppendTextJSON appends the JSON value of column c's text-protocol bytes:
// NewTextJSON(c).Append(buf, raw), for a single value.
func AppendTextJSON(buf []byte, c *Column, raw []byte) ([]byte, error) {
	t := NewTextJSON(c)
	return t.Append(buf, raw)
}

// Masks of the bytes of a uint64 for finding the bytes a JSON string
// escapes, and non-ASCII ones, eight at a time.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// appendVerbatim appends s as a JSON string, as AppendJSONString does, if
// s is its own UTF-8: valid UTF-8 when utf8OK, ASCII otherwise. When it is
// not, it returns buf unchanged and false. It checks and escapes in one
// pass, eight bytes at a time while they are ASCII that needs no escape.
func appendVerbatim(buf, s []byte, utf8OK bool) ([]byte, bool) {
	n0 := len(buf)
	buf = append(buf, '"')
	start, i := 0, 0
	for i < len(s) {
		for i+8 <= len(s) {
			x := binary.LittleEndian.Uint64(s[i:])
			q := x ^ ('"' * ones)
			b := x ^ ('\\' * ones)
			// The lowest byte flagged is the first that is below 0x20, a
			// quote, a backslash or not ASCII; bytes above it may be
			// flagged wrongly (borrows), which the byte loop sorts out.
			special := (x-0x20*ones)&^x | (q-ones)&^q | (b-ones)&^b | x
			if special &= highs; special != 0 {
				i += bits.TrailingZeros64(special) / 8
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			if !utf8OK {
				return buf[:n0], false
			}
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				return buf[:n0], false
			}
			i += size
		case c >= 0x20 && c != '"' && c != '\\':
			i++
		default:
			buf = append(buf, s[start:i]...)
			buf = appendEscape(buf, c)
			i++
			start = i
		}
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"'), true
}

// plainInt reports whether b is an integer as Encode prints one: an
// optional minus, then digits without leading zeros (ZEROFILL's are not).
func plainInt(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	return len(b) > 0 && len(b) <= 20 && (b[0] != '0' || len(b) == 1) && allDigits(b)
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// plainDecimal reports whether b is a DECIMAL as Encode prints one: an
// optional minus, an integer part without leading zeros, an optional
// fraction.
func plainDecimal(b []byte) bool {
	intPart, frac, hasFrac := bytes.Cut(b, []byte{'.'})
	if hasFrac && (len(frac) == 0 || !allDigits(frac)) {
		return false
	}
	return plainInt(intPart)
}

// temporalText reports whether b holds only what dates and times print.
func temporalText(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && c != '-' && c != ':' && c != ' ' && c != '.' {
			return false
		}
	}
	return true
}
