package rowcodec

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// This file lets a snapshot, which reads rows with SELECT, describe and
// decode them exactly as capture does from the binlog: ColumnFromSchema
// builds the Column a binlog table map would give, and FromText turns a
// text-protocol value into the Go value the binlog decoder would give, so
// both go through [Encode].

// ColumnFromSchema builds a column from its information_schema.COLUMNS
// entry (DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, IS_NULLABLE = "YES").
func ColumnFromSchema(name, dataType, columnType, charset string, nullable bool) (Column, error) {
	c := Column{Name: name, Nullable: nullable, Charset: charset}
	ct := strings.ToLower(columnType)
	c.Unsigned = strings.Contains(ct, "unsigned")
	args := ""
	if i := strings.IndexByte(ct, '('); i >= 0 {
		if j := strings.LastIndexByte(ct, ')'); j > i {
			args = columnType[i+1 : j]
		}
	}
	num := func(s string) uint16 {
		n, _ := strconv.Atoi(strings.TrimSpace(s))
		return uint16(n)
	}
	text := func(typ byte, meta uint16) {
		c.Type, c.Meta = typ, meta
		if c.Charset == "" {
			c.Charset = "binary"
		}
	}
	switch strings.ToLower(dataType) {
	case "tinyint":
		c.Type = mysql.MYSQL_TYPE_TINY
	case "smallint":
		c.Type = mysql.MYSQL_TYPE_SHORT
	case "mediumint":
		c.Type = mysql.MYSQL_TYPE_INT24
	case "int", "integer":
		c.Type = mysql.MYSQL_TYPE_LONG
	case "bigint":
		c.Type = mysql.MYSQL_TYPE_LONGLONG
	case "decimal", "numeric":
		p, s, _ := strings.Cut(args, ",")
		c.Type, c.Meta = mysql.MYSQL_TYPE_NEWDECIMAL, num(p)<<8|num(s)
	case "float":
		c.Type = mysql.MYSQL_TYPE_FLOAT
	case "double", "real", "double precision":
		c.Type = mysql.MYSQL_TYPE_DOUBLE
	case "bit":
		n := num(args)
		c.Type, c.Meta = mysql.MYSQL_TYPE_BIT, (n/8)<<8|n%8
	case "date":
		c.Type = mysql.MYSQL_TYPE_DATE
	case "datetime":
		c.Type, c.Meta = mysql.MYSQL_TYPE_DATETIME2, num(args)
	case "timestamp":
		c.Type, c.Meta = mysql.MYSQL_TYPE_TIMESTAMP2, num(args)
	case "time":
		c.Type, c.Meta = mysql.MYSQL_TYPE_TIME2, num(args)
	case "year":
		c.Type = mysql.MYSQL_TYPE_YEAR
	case "char":
		text(mysql.MYSQL_TYPE_STRING, 0)
	case "binary":
		c.Charset = "binary"
		text(mysql.MYSQL_TYPE_STRING, 0)
	case "varchar":
		text(mysql.MYSQL_TYPE_VARCHAR, 0)
	case "varbinary":
		c.Charset = "binary"
		text(mysql.MYSQL_TYPE_VARCHAR, 0)
	case "tinytext", "tinyblob":
		text(mysql.MYSQL_TYPE_BLOB, 1)
	case "text", "blob":
		text(mysql.MYSQL_TYPE_BLOB, 2)
	case "mediumtext", "mediumblob":
		text(mysql.MYSQL_TYPE_BLOB, 3)
	case "longtext", "longblob":
		text(mysql.MYSQL_TYPE_BLOB, 4) // MariaDB's JSON is a LONGTEXT, in the binlog too
	case "json":
		c.Type = mysql.MYSQL_TYPE_JSON
		c.Charset = ""
	case "enum", "set":
		values, err := parseValueList(args)
		if err != nil {
			return Column{}, fmt.Errorf("column %s: %s values in %q: %w", name, dataType, columnType, err)
		}
		if strings.EqualFold(dataType, "enum") {
			c.Type, c.Enum = mysql.MYSQL_TYPE_ENUM, values
		} else {
			c.Type, c.Set = mysql.MYSQL_TYPE_SET, values
		}
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection", "geomcollection":
		c.Type, c.Charset = mysql.MYSQL_TYPE_GEOMETRY, "binary"
	default:
		return Column{}, fmt.Errorf("column %s has type %s, which databus does not support", name, columnType)
	}
	return c, nil
}

// parseValueList parses the quoted list of an ENUM or SET column type:
// 'a','b”c' (quotes doubled, backslashes escaped).
func parseValueList(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		if s[i] != '\'' {
			return nil, fmt.Errorf("expected a quote at offset %d", i)
		}
		var b strings.Builder
		i++
		for {
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated value")
			}
			ch := s[i]
			if ch == '\'' && i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i += 2
				continue
			}
			if ch == '\\' && i+1 < len(s) {
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
			if ch == '\'' {
				i++
				break
			}
			b.WriteByte(ch)
			i++
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

// SelectExpr returns the select-list expression that reads column c for
// [FromText]: the quoted name, or a lossless conversion where the text
// protocol would round (FLOAT prints only 6 significant digits).
func SelectExpr(c *Column) string {
	if c.Type == mysql.MYSQL_TYPE_FLOAT {
		return "CAST(" + QuoteIdent(c.Name) + " AS DOUBLE)"
	}
	return QuoteIdent(c.Name)
}

// FromText turns the text-protocol bytes of column c, read with [SelectExpr]
// on a session with SET NAMES binary and time_zone '+00:00', into the value
// the binlog decoder gives for the same stored value; nil is NULL. The
// result may alias raw.
func FromText(c *Column, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	s := string(raw)
	switch c.Type {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG, mysql.MYSQL_TYPE_YEAR:
		if c.Unsigned {
			return strconv.ParseUint(s, 10, 64)
		}
		return strconv.ParseInt(s, 10, 64)
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		return s, nil
	case mysql.MYSQL_TYPE_FLOAT:
		f, err := strconv.ParseFloat(s, 64)
		return float32(f), err
	case mysql.MYSQL_TYPE_DOUBLE:
		return strconv.ParseFloat(s, 64)
	case mysql.MYSQL_TYPE_BIT:
		if len(raw) > 8 {
			return nil, fmt.Errorf("bit value of %d bytes", len(raw))
		}
		var v uint64
		for _, b := range raw {
			v = v<<8 | uint64(b)
		}
		return int64(v), nil
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2,
		mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2, mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		return s, nil
	case mysql.MYSQL_TYPE_ENUM:
		if s == "" {
			return int64(0), nil
		}
		for i, v := range c.Enum {
			if v == s {
				return int64(i + 1), nil
			}
		}
		return nil, fmt.Errorf("enum value %q is not among %q", s, c.Enum)
	case mysql.MYSQL_TYPE_SET:
		var mask int64
		if s == "" {
			return mask, nil
		}
		for part := range strings.SplitSeq(s, ",") {
			i := indexOf(c.Set, part)
			if i < 0 {
				return nil, fmt.Errorf("set member %q is not among %q", part, c.Set)
			}
			mask |= 1 << i
		}
		return mask, nil
	case mysql.MYSQL_TYPE_STRING:
		if c.Charset == "binary" {
			// BINARY(n) is padded with zero bytes; the binlog carries it
			// without them (and the SQL pads them again).
			return bytes.TrimRight(raw, "\x00"), nil
		}
	}
	return raw, nil // strings, JSON, geometry: the stored bytes
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
