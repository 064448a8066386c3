package rowcodec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/databus/databus/internal/charset"
)

// ColumnFromSchema builds a column from its information_schema.COLUMNS row:
// DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME ("" when NULL) and
// IS_NULLABLE = "YES". The result is the Column that capture builds from a
// MariaDB table map of the same column: same Type, Meta, Unsigned, Charset,
// Nullable, Enum and Set. A type databus cannot decode is an error naming
// the column.
func ColumnFromSchema(name, dataType, columnType, characterSet string, nullable bool) (Column, error) {
	c := Column{Name: name, Nullable: nullable, Charset: characterSet}
	args, attrs, err := splitColumnType(columnType)
	if err != nil {
		return Column{}, fmt.Errorf("column %s: type %q: %w", name, columnType, err)
	}
	bad := func(format string, a ...any) (Column, error) {
		return Column{}, fmt.Errorf("column %s: type %q: %s", name, columnType, fmt.Sprintf(format, a...))
	}
	// number parses a length, precision or scale from the type's arguments.
	number := func(s string) (uint16, error) {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		return uint16(n), err
	}
	// fsp is the fractional seconds precision of a temporal type.
	fsp := func() (uint16, error) {
		if args == "" {
			return 0, nil
		}
		n, err := number(args)
		if err != nil || n > 6 {
			return 0, fmt.Errorf("fractional seconds precision %q", args)
		}
		return n, nil
	}
	// octets is the byte length of a CHAR(n) or VARCHAR(n) column: the
	// binlog describes them by it.
	octets := func() (uint16, error) {
		n, err := number(args)
		if err != nil {
			return 0, fmt.Errorf("length %q", args)
		}
		max, ok := charset.MaxLen(c.Charset)
		if !ok {
			return 0, fmt.Errorf("character set %q is unknown to databus", c.Charset)
		}
		return n * uint16(max), nil
	}
	// Only numeric types have a sign; ZEROFILL implies UNSIGNED.
	unsigned := attrs["unsigned"] || attrs["zerofill"]

	switch dt := strings.ToLower(dataType); dt {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		c.Type = map[string]byte{
			"tinyint": mysql.MYSQL_TYPE_TINY, "smallint": mysql.MYSQL_TYPE_SHORT, "mediumint": mysql.MYSQL_TYPE_INT24,
			"int": mysql.MYSQL_TYPE_LONG, "integer": mysql.MYSQL_TYPE_LONG, "bigint": mysql.MYSQL_TYPE_LONGLONG,
		}[dt]
		c.Unsigned = unsigned
	case "decimal", "numeric":
		p, s, _ := strings.Cut(args, ",")
		prec, err1 := number(p)
		scale, err2 := number(s)
		if err1 != nil || err2 != nil || prec > 65 || scale > 38 || scale > prec {
			return bad("precision and scale %q", args)
		}
		c.Type, c.Meta, c.Unsigned = mysql.MYSQL_TYPE_NEWDECIMAL, prec<<8|scale, unsigned
	case "float":
		c.Type, c.Meta, c.Unsigned = mysql.MYSQL_TYPE_FLOAT, 4, unsigned // meta: the pack length
	case "double", "real", "double precision":
		c.Type, c.Meta, c.Unsigned = mysql.MYSQL_TYPE_DOUBLE, 8, unsigned
	case "bit":
		n, err := number(args)
		if err != nil || n < 1 || n > 64 {
			return bad("bit length %q", args)
		}
		// Meta holds whole bytes in the high byte, the remaining bits in
		// the low one.
		c.Type, c.Meta = mysql.MYSQL_TYPE_BIT, (n/8)<<8|n%8
	case "date":
		// MariaDB writes DATE columns as MYSQL_TYPE_DATE, in the 3-byte
		// format MySQL calls NEWDATE.
		c.Type = mysql.MYSQL_TYPE_DATE
	case "datetime", "timestamp", "time":
		n, err := fsp()
		if err != nil {
			return bad("%v", err)
		}
		c.Type = map[string]byte{"datetime": mysql.MYSQL_TYPE_DATETIME2, "timestamp": mysql.MYSQL_TYPE_TIMESTAMP2, "time": mysql.MYSQL_TYPE_TIME2}[dt]
		c.Meta = n
	case "year":
		// YEAR is stored as an unsigned byte and the table map says so.
		c.Type, c.Unsigned = mysql.MYSQL_TYPE_YEAR, true
	case "char", "binary":
		if dt == "binary" || c.Charset == "" {
			c.Charset = "binary"
		}
		n, err := octets()
		if err != nil {
			return bad("%v", err)
		}
		c.Type, c.Meta = mysql.MYSQL_TYPE_STRING, stringMeta(mysql.MYSQL_TYPE_STRING, n)
	case "varchar", "varbinary":
		if dt == "varbinary" || c.Charset == "" {
			c.Charset = "binary"
		}
		n, err := octets()
		if err != nil {
			return bad("%v", err)
		}
		c.Type, c.Meta = mysql.MYSQL_TYPE_VARCHAR, n
	case "tinytext", "tinyblob", "text", "blob", "mediumtext", "mediumblob", "longtext", "longblob":
		// The binlog has one BLOB type; its meta is the size of the length
		// prefix, 1 to 4 bytes. MariaDB's JSON is a LONGTEXT, in the
		// binlog too.
		if strings.HasSuffix(dt, "blob") || c.Charset == "" {
			c.Charset = "binary"
		}
		c.Type = mysql.MYSQL_TYPE_BLOB
		c.Meta = map[string]uint16{"tiny": 1, "": 2, "medium": 3, "long": 4}[strings.TrimSuffix(strings.TrimSuffix(dt, "text"), "blob")]
	case "enum", "set":
		values, err := parseValueList(args)
		if err != nil {
			return bad("%s values: %v", dt, err)
		}
		// The table map holds the values in the column's character set;
		// information_schema shows them in UTF-8.
		if values, err = labelsInCharset(values, c.Charset); err != nil {
			return bad("%v", err)
		}
		if dt == "enum" {
			// Meta is the real type and the pack length: the index takes
			// one byte up to 255 values, two beyond.
			c.Type, c.Enum = mysql.MYSQL_TYPE_ENUM, values
			c.Meta = uint16(mysql.MYSQL_TYPE_ENUM)<<8 | 1
			if len(values) > 255 {
				c.Meta++
			}
		} else {
			// The bitmask takes 1, 2, 3, 4 or 8 bytes.
			c.Type, c.Set = mysql.MYSQL_TYPE_SET, values
			n := (len(values) + 7) / 8
			if n > 4 {
				n = 8
			}
			c.Meta = uint16(mysql.MYSQL_TYPE_SET)<<8 | uint16(n)
		}
	case "uuid", "inet6", "inet4":
		// MariaDB's UUID, INET6 and INET4 travel in the binlog as the
		// BINARY(16) or BINARY(4) they are stored as.
		n := uint16(16)
		if dt == "inet4" {
			n = 4
		}
		c.Type, c.Meta, c.Charset = mysql.MYSQL_TYPE_STRING, stringMeta(mysql.MYSQL_TYPE_STRING, n), "binary"
	case "json":
		// MySQL's JSON (MariaDB's is a LONGTEXT).
		c.Type, c.Meta, c.Charset = mysql.MYSQL_TYPE_JSON, 4, ""
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
		"geometrycollection", "geomcollection":
		// Geometry travels as a BLOB with a 4-byte length; MariaDB's table
		// map gives it the binary collation.
		c.Type, c.Meta, c.Charset = mysql.MYSQL_TYPE_GEOMETRY, 4, "binary"
	default:
		return Column{}, fmt.Errorf("column %s has type %s, which databus does not support", name, columnType)
	}
	return c, nil
}

// splitColumnType splits a COLUMN_TYPE such as "decimal(5,2) unsigned
// zerofill" or "enum('a','b)')" into the text between the parentheses and
// the set of attribute words after them.
func splitColumnType(ct string) (args string, attrs map[string]bool, err error) {
	rest := ct
	if open := strings.IndexByte(ct, '('); open >= 0 {
		// Find the closing parenthesis outside quotes: ENUM and SET
		// values may hold any character.
		quoted := false
		end := -1
		for i := open + 1; i < len(ct) && end < 0; i++ {
			switch {
			case quoted && ct[i] == '\\':
				i++
			case ct[i] == '\'':
				quoted = !quoted // a doubled quote toggles twice
			case !quoted && ct[i] == ')':
				end = i
			}
		}
		if end < 0 {
			return "", nil, fmt.Errorf("unbalanced parentheses")
		}
		args, rest = ct[open+1:end], ct[end+1:]
	} else if sp := strings.IndexByte(ct, ' '); sp >= 0 {
		rest = ct[sp:]
	} else {
		rest = ""
	}
	attrs = map[string]bool{}
	for _, w := range strings.Fields(strings.ToLower(rest)) {
		attrs[w] = true
	}
	return args, attrs, nil
}

// parseValueList parses the values of an ENUM or SET column type as
// information_schema shows them (MariaDB's append_unescaped): each value
// quoted, a quote inside doubled, and a backslash, NUL, newline or carriage
// return escaped with a backslash, as in
//
//	'a','it''s','back\\slash','line\nbreak'
func parseValueList(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		if s[i] != '\'' {
			return nil, fmt.Errorf("expected a quote at offset %d", i)
		}
		var b strings.Builder
		i++
	value:
		for {
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated value")
			}
			switch ch := s[i]; {
			case ch == '\'' && i+1 < len(s) && s[i+1] == '\'':
				b.WriteByte('\'')
				i += 2
			case ch == '\'':
				i++
				break value
			case ch == '\\' && i+1 < len(s):
				b.WriteByte(unescape(s[i+1]))
				i += 2
			default:
				b.WriteByte(ch)
				i++
			}
		}
		out = append(out, b.String())
		if i < len(s) {
			if s[i] != ',' {
				return nil, fmt.Errorf("expected a comma at offset %d", i)
			}
			i++
		}
	}
	return out, nil
}

// unescape returns the byte that backslash + c stands for in a quoted
// string.
func unescape(c byte) byte {
	switch c {
	case '0':
		return 0
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'Z':
		return 0x1A
	}
	return c
}

// labelsInCharset converts ENUM or SET values from UTF-8 to cs, the form
// the table map gives them in.
func labelsInCharset(values []string, cs string) ([]string, error) {
	if charset.IsUTF8(cs) || cs == "" {
		return values, nil
	}
	out := make([]string, len(values))
	for i, v := range values {
		b, err := charset.Encode(cs, v)
		if err != nil {
			return nil, fmt.Errorf("value %q in character set %s: %w", v, cs, err)
		}
		out[i] = string(b)
	}
	return out, nil
}

// stringLength is the byte length of a CHAR or BINARY column from its
// table map metadata (the inverse of [stringMeta]).
func stringLength(meta uint16) uint16 {
	return meta&0xFF | uint16((byte(meta>>8)&0x30)^0x30)<<4
}

// stringMeta is the table map metadata of a CHAR or BINARY column of n
// bytes: the real type in the high byte, with bits 8 and 9 of the length
// folded into it (inverted), and the low 8 bits of the length.
func stringMeta(realType byte, n uint16) uint16 {
	return uint16(realType^byte((n&0x300)>>4))<<8 | n&0xFF
}

// JSONCheckColumn returns the column that a CHECK constraint's clause, as
// information_schema.CHECK_CONSTRAINTS shows it, keeps to JSON: the name
// in json_valid(`name`), when that is the whole clause. This is how
// MariaDB's JSON type is stored (a LONGTEXT with such a check), and how a
// user marks a text column as JSON by hand.
func JSONCheckColumn(clause string) (string, bool) {
	clause = strings.TrimSpace(clause)
	if len(clause) < len("json_valid(``)") || !strings.EqualFold(clause[:len("json_valid(`")], "json_valid(`") || !strings.HasSuffix(clause, "`)") {
		return "", false
	}
	quoted := clause[len("json_valid(`") : len(clause)-2]
	// Inside, a backtick is doubled; a lone one ends the name early.
	name := strings.ReplaceAll(quoted, "``", "`")
	if strings.Count(quoted, "`")%2 != 0 || strings.Contains(strings.ReplaceAll(quoted, "``", ""), "`") {
		return "", false
	}
	return name, true
}

// MarkJSON sets [Column.JSON] on the text columns of cols named in json.
func MarkJSON(cols []Column, json map[string]bool) {
	for i := range cols {
		c := &cols[i]
		if json[c.Name] && c.Type == mysql.MYSQL_TYPE_BLOB && c.Charset != "binary" {
			c.JSON = true
		}
	}
}
