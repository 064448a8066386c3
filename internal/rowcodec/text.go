package rowcodec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/databus/databus/internal/charset"
	"github.com/databus/databus/sdk"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// This file lets a snapshot, which reads rows with a plain SELECT, describe
// and decode them exactly as capture does from the binlog:
//
//   - [ColumnFromSchema] builds, from information_schema.COLUMNS, the Column
//     that a binlog TABLE_MAP event (binlog_row_metadata=FULL) gives for the
//     same column;
//   - [SelectExpr] is the select-list expression that reads a column without
//     loss in the text protocol;
//   - [FromText] turns what that expression returns into the Go value that
//     go-mysql's binlog decoder gives for the same stored value,
//
// so that snapshot rows and binlog rows go through [Encode] alike. The
// session that reads the rows must have run SET NAMES binary (character
// columns then arrive as their stored bytes) and SET time_zone = '+00:00'
// (TIMESTAMP then reads as the UTC time capture emits).

// SelectExpr returns the select-list expression that reads column c for
// [FromText]: the quoted name, or an expression where the column's own
// text would lose information:
//
//   - FLOAT and DOUBLE as CAST(… AS DOUBLE): a FLOAT prints only 6
//     significant digits and a DOUBLE(M,D) rounds to D decimals, while a
//     double prints in full (the shortest text that reads back exactly);
//   - YEAR as YEAR(…): YEAR(2) prints two digits, which cannot tell 2000
//     from the zero year;
//   - BINARY(n) as CAST(… AS BINARY(n)): the bytes of MariaDB's UUID,
//     INET6 and INET4, which the binlog carries as BINARY, rather than
//     their text (a no-op for a real BINARY);
func SelectExpr(c *Column) string {
	name := sdk.QuoteIdent(c.Name)
	switch c.Type {
	case mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE:
		return "CAST(" + name + " AS DOUBLE)"
	case mysql.MYSQL_TYPE_YEAR:
		return "YEAR(" + name + ")"
	case mysql.MYSQL_TYPE_STRING:
		if c.Charset == "binary" {
			return "CAST(" + name + " AS BINARY(" + strconv.Itoa(int(stringLength(c.Meta))) + "))"
		}
	}
	return name
}

// FromText turns the text-protocol bytes of column c, read with
// [SelectExpr] on a session with SET NAMES binary and time_zone '+00:00',
// into the value go-mysql's binlog decoder gives for the same stored value
// (with capture's decoder settings: no ParseTime, no UseDecimal, UTC
// timestamps); nil is NULL. The Go type is the decoder's too, except that
// character and byte strings are always []byte, which [Encode] treats as it
// treats a string; that a BINARY(n) keeps the trailing zero bytes the
// binlog drops ([Encode] puts them back); and that an ENUM or SET value is
// its text in the column's character set (the member, or the members
// joined by commas), where the decoder gives the index or bitmask: [Encode]
// gives both the same JSON and SQL. The text is the server's own, so it is
// right where information_schema's list of members is not (it shows
// characters beyond the Basic Multilingual Plane as ?), and the invalid
// ENUM value (index 0) reads as the empty string, as the binlog's does. The
// result may alias raw.
func FromText(c *Column, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	switch c.Type {
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_GEOMETRY,
		mysql.MYSQL_TYPE_VECTOR, mysql.MYSQL_TYPE_ENUM, mysql.MYSQL_TYPE_SET:
		return raw, nil // the stored bytes
	case mysql.MYSQL_TYPE_STRING:
		return charFromText(c, raw), nil
	case mysql.MYSQL_TYPE_JSON:
		return mysqlJSONFromText(raw)
	}
	s := string(raw) // every other value is short text
	switch c.Type {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
		return intFromText(c.Type, c.Unsigned, s)
	case mysql.MYSQL_TYPE_YEAR:
		// The decoder gives an int, 0 for the zero year. YEAR() gives 1900
		// for the zero year of a YEAR(2), which holds no real 1900.
		y, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("year %q: %w", s, err)
		}
		if y == 1900 {
			y = 0
		}
		return y, nil
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		return decimalFromText(s)
	case mysql.MYSQL_TYPE_FLOAT:
		// Read as a double (SelectExpr), which holds the float exactly.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		if float64(float32(f)) != f {
			return nil, fmt.Errorf("float value %s is not a single-precision number", s)
		}
		return float32(f), nil
	case mysql.MYSQL_TYPE_DOUBLE:
		return strconv.ParseFloat(s, 64)
	case mysql.MYSQL_TYPE_BIT:
		// BIT comes as its big-endian bytes.
		if len(raw) == 0 || len(raw) > 8 {
			return nil, fmt.Errorf("bit value of %d bytes", len(raw))
		}
		var v uint64
		for _, b := range raw {
			v = v<<8 | uint64(b)
		}
		return int64(v), nil
	case mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2:
		// The decoder drops a fraction of zero ("12:00:00", not
		// "12:00:00.000000"); DATETIME and TIMESTAMP keep theirs.
		if whole, frac, ok := strings.Cut(s, "."); ok && strings.Trim(frac, "0") == "" {
			return whole, nil
		}
		return s, nil
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2,
		mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		// The server prints them as the decoder does, zero dates and
		// fractions to the column's precision included.
		return s, nil
	}
	return nil, fmt.Errorf("column type %s (code %d) is not supported", c.TypeName(), c.Type)
}

// charFromText returns the value of a CHAR or BINARY column c: CHAR
// without its trailing spaces, as the binlog carries it (the text protocol
// gives them only under sql_mode PAD_CHAR_TO_FULL_LENGTH); BINARY(n) keeps
// its n bytes (SelectExpr reads them whole; Encode pads the binlog's).
func charFromText(c *Column, raw []byte) []byte {
	if c.Charset != "binary" && charset.ASCIIBased(c.Charset) {
		return bytes.TrimRight(raw, " ")
	}
	return raw
}

// intFromText parses an integer into the Go type the binlog decoder gives
// for the column type and sign.
func intFromText(typ byte, unsigned bool, s string) (any, error) {
	size := 64
	switch typ {
	case mysql.MYSQL_TYPE_TINY:
		size = 8
	case mysql.MYSQL_TYPE_SHORT:
		size = 16
	case mysql.MYSQL_TYPE_INT24:
		size = 24
	case mysql.MYSQL_TYPE_LONG:
		size = 32
	}
	if unsigned {
		// ParseUint accepts the leading zeros of ZEROFILL.
		u, err := strconv.ParseUint(s, 10, size)
		if err != nil {
			return nil, err
		}
		switch size {
		case 8:
			return uint8(u), nil
		case 16:
			return uint16(u), nil
		case 24, 32:
			return uint32(u), nil
		}
		return u, nil
	}
	i, err := strconv.ParseInt(s, 10, size)
	if err != nil {
		return nil, err
	}
	switch size {
	case 8:
		return int8(i), nil
	case 16:
		return int16(i), nil
	case 24, 32:
		return int32(i), nil
	}
	return i, nil
}

// decimalFromText checks a DECIMAL's text and drops the leading zeros of
// ZEROFILL: otherwise the server prints it as the decoder does, with the
// column's scale ("-0.50", "7").
func decimalFromText(s string) (string, error) {
	digits := strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(digits, ".")
	if intPart == "" || strings.Trim(intPart, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" ||
		strings.HasSuffix(digits, ".") {
		return "", fmt.Errorf("decimal value %q", s)
	}
	if trimmed := strings.TrimLeft(intPart, "0"); len(trimmed) < len(intPart) {
		if trimmed == "" {
			trimmed = "0"
		}
		s = s[:len(s)-len(digits)] + trimmed + digits[len(intPart):]
	}
	return s, nil
}

// mysqlJSONFromText renders the text of a MySQL JSON value as go-mysql
// renders its binary form: json.Marshal of the decoded document, so
// compact, with object keys sorted and <, > and & escaped; integers as
// integers, other numbers as float64. It cannot tell the DECIMAL, DATE,
// TIME and DATETIME scalars that CAST(… AS JSON) stores, which go-mysql
// renders as strings, from the JSON numbers and strings they print as.
// MariaDB's JSON is a LONGTEXT and never comes here.
func mysqlJSONFromText(raw []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		return "", fmt.Errorf("JSON value: %w", err)
	}
	var number func(v any) (any, error)
	number = func(v any) (any, error) {
		switch x := v.(type) {
		case json.Number:
			if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return i, nil
			}
			if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
				return u, nil
			}
			return strconv.ParseFloat(string(x), 64)
		case []any:
			for i := range x {
				var err error
				if x[i], err = number(x[i]); err != nil {
					return nil, err
				}
			}
		case map[string]any:
			for k := range x {
				var err error
				if x[k], err = number(x[k]); err != nil {
					return nil, err
				}
			}
		}
		return v, nil
	}
	doc, err := number(doc)
	if err != nil {
		return "", fmt.Errorf("JSON value: %w", err)
	}
	out, err := json.Marshal(doc)
	return string(out), err
}
