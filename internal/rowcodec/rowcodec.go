package rowcodec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/databus/databus/internal/charset"
	"github.com/databus/databus/sdk"
)

// Column is what the codec needs to know about one column.
type Column struct {
	Name string
	// Type is the binlog type code (the real type for ENUM and SET).
	Type byte
	// Meta is the binlog column metadata (lengths, precision).
	Meta     uint16
	Unsigned bool
	// Charset is the column's character set for character columns,
	// "binary" for byte strings, "" otherwise.
	Charset  string
	Nullable bool
	Enum     []string
	Set      []string
	// JSON marks MariaDB's JSON: a text column (LONGTEXT) that a CHECK
	// (json_valid(col)) keeps to JSON documents. Its type is "json", its
	// [Column.Storage] the text type.
	JSON bool
}

// Storage is the type the server stores the column as, when TypeName
// names what it holds instead ("longtext" for MariaDB's JSON); "" when
// they are the same.
func (c Column) Storage() string {
	if !c.JSON {
		return ""
	}
	plain := c
	plain.JSON = false
	return plain.TypeName()
}

// TypeName renders the column type the way the event documents it, e.g.
// "bigint unsigned", "decimal(10,2)", "datetime(6)", "varbinary".
func (c Column) TypeName() string {
	unsigned := ""
	if c.Unsigned {
		unsigned = " unsigned"
	}
	frac := func(base string) string {
		if c.Meta == 0 {
			return base
		}
		return fmt.Sprintf("%s(%d)", base, c.Meta)
	}
	bin := c.Charset == "binary"
	if c.JSON {
		return "json"
	}
	switch c.Type {
	case mysql.MYSQL_TYPE_TINY:
		return "tinyint" + unsigned
	case mysql.MYSQL_TYPE_SHORT:
		return "smallint" + unsigned
	case mysql.MYSQL_TYPE_INT24:
		return "mediumint" + unsigned
	case mysql.MYSQL_TYPE_LONG:
		return "int" + unsigned
	case mysql.MYSQL_TYPE_LONGLONG:
		return "bigint" + unsigned
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		return fmt.Sprintf("decimal(%d,%d)", c.Meta>>8, c.Meta&0xFF) + unsigned
	case mysql.MYSQL_TYPE_FLOAT:
		return "float" + unsigned
	case mysql.MYSQL_TYPE_DOUBLE:
		return "double" + unsigned
	case mysql.MYSQL_TYPE_BIT:
		return fmt.Sprintf("bit(%d)", (c.Meta>>8)*8+(c.Meta&0xFF))
	case mysql.MYSQL_TYPE_TIMESTAMP:
		return "timestamp"
	case mysql.MYSQL_TYPE_TIMESTAMP2:
		return frac("timestamp")
	case mysql.MYSQL_TYPE_DATETIME:
		return "datetime"
	case mysql.MYSQL_TYPE_DATETIME2:
		return frac("datetime")
	case mysql.MYSQL_TYPE_TIME:
		return "time"
	case mysql.MYSQL_TYPE_TIME2:
		return frac("time")
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		return "date"
	case mysql.MYSQL_TYPE_YEAR:
		return "year"
	case mysql.MYSQL_TYPE_ENUM:
		return "enum"
	case mysql.MYSQL_TYPE_SET:
		return "set"
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
		if bin {
			return "varbinary"
		}
		return "varchar"
	case mysql.MYSQL_TYPE_STRING:
		if bin {
			return "binary"
		}
		return "char"
	case mysql.MYSQL_TYPE_BLOB:
		size := map[uint16]string{1: "tiny", 2: "", 3: "medium", 4: "long"}[c.Meta]
		if bin {
			return size + "blob"
		}
		return size + "text"
	case mysql.MYSQL_TYPE_JSON:
		return "json"
	case mysql.MYSQL_TYPE_GEOMETRY:
		return "geometry"
	case mysql.MYSQL_TYPE_VECTOR:
		return "vector"
	}
	return fmt.Sprintf("type%d", c.Type)
}

// Value is one encoded column value: its JSON form for the event and its
// SQL literal for the generated statement.
type Value struct {
	JSON any
	SQL  string
}

// Null is the encoding of SQL NULL.
var Null = Value{JSON: nil, SQL: "NULL"}

// Encode turns a value decoded from a binlog row image into its event and
// SQL forms. It fails, rather than guessing, on a value it cannot represent
// exactly.
func Encode(c *Column, v any) (Value, error) {
	if v == nil {
		return Null, nil
	}
	switch c.Type {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_YEAR:
		s, err := intText(v)
		if err != nil {
			return Value{}, err
		}
		return Value{JSON: json.Number(s), SQL: s}, nil
	case mysql.MYSQL_TYPE_LONGLONG:
		// BIGINT travels as a string: JavaScript numbers cannot hold it.
		s, err := intText(v)
		if err != nil {
			return Value{}, err
		}
		return Value{JSON: s, SQL: s}, nil
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		s, ok := v.(string)
		if !ok {
			return Value{}, fmt.Errorf("decimal value of Go type %T", v)
		}
		return Value{JSON: s, SQL: s}, nil
	case mysql.MYSQL_TYPE_FLOAT:
		f, ok := v.(float32)
		if !ok {
			return Value{}, fmt.Errorf("float value of Go type %T", v)
		}
		s := strconv.FormatFloat(float64(f), 'g', -1, 32)
		return Value{JSON: json.Number(s), SQL: s}, nil
	case mysql.MYSQL_TYPE_DOUBLE:
		f, ok := v.(float64)
		if !ok {
			return Value{}, fmt.Errorf("double value of Go type %T", v)
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		return Value{JSON: json.Number(s), SQL: s}, nil
	case mysql.MYSQL_TYPE_BIT:
		i, ok := v.(int64)
		if !ok {
			return Value{}, fmt.Errorf("bit value of Go type %T", v)
		}
		s := strconv.FormatUint(uint64(i), 10)
		return Value{JSON: s, SQL: s}, nil
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2,
		mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2, mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		s, ok := v.(string)
		if !ok {
			return Value{}, fmt.Errorf("temporal value of Go type %T", v)
		}
		return Value{JSON: s, SQL: "'" + s + "'"}, nil
	case mysql.MYSQL_TYPE_ENUM:
		if text, err := asBytes(v); err == nil { // the text (FromText), not the binlog's number
			return labelValue(c.Charset, text)
		}
		i, ok := v.(int64)
		if !ok {
			return Value{}, fmt.Errorf("enum value of Go type %T", v)
		}
		if i == 0 {
			return Value{JSON: "", SQL: "''"}, nil // MySQL's invalid-value entry
		}
		if int(i) > len(c.Enum) {
			return Value{}, fmt.Errorf("enum index %d beyond the %d values in the table map", i, len(c.Enum))
		}
		return labelValue(c.Charset, []byte(c.Enum[i-1]))
	case mysql.MYSQL_TYPE_SET:
		if text, err := asBytes(v); err == nil { // the text (FromText), not the binlog's number
			return labelValue(c.Charset, text)
		}
		i, ok := v.(int64)
		if !ok {
			return Value{}, fmt.Errorf("set value of Go type %T", v)
		}
		var parts []string
		for m := uint64(i); m != 0; m &= m - 1 {
			b := bits.TrailingZeros64(m)
			if b >= len(c.Set) {
				return Value{}, fmt.Errorf("set bit %d beyond the %d values in the table map", b, len(c.Set))
			}
			parts = append(parts, c.Set[b])
		}
		return labelValue(c.Charset, []byte(strings.Join(parts, ",")))
	case mysql.MYSQL_TYPE_JSON:
		b, err := asBytes(v)
		if err != nil {
			return Value{}, err
		}
		if !utf8.Valid(b) {
			return Value{}, fmt.Errorf("JSON value is not valid UTF-8")
		}
		return textValue(string(b)), nil
	case mysql.MYSQL_TYPE_GEOMETRY, mysql.MYSQL_TYPE_VECTOR:
		b, err := asBytes(v)
		if err != nil {
			return Value{}, err
		}
		return binaryValue(b), nil
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_BLOB:
		b, err := asBytes(v)
		if err != nil {
			return Value{}, err
		}
		if c.Charset == "binary" {
			if c.Type == mysql.MYSQL_TYPE_STRING {
				b = padBinary(b, int(stringLength(c.Meta)))
			}
			return binaryValue(b), nil
		}
		s, err := charset.Decode(c.Charset, b)
		if err != nil {
			return Value{}, err
		}
		return textValue(s), nil
	}
	return Value{}, fmt.Errorf("column type %s (code %d) is not supported", c.TypeName(), c.Type)
}

func intText(v any) (string, error) {
	switch x := v.(type) {
	case int8:
		return strconv.FormatInt(int64(x), 10), nil
	case int16:
		return strconv.FormatInt(int64(x), 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case uint8:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint16:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	}
	return "", fmt.Errorf("integer value of Go type %T", v)
}

func asBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	}
	return nil, fmt.Errorf("string value of Go type %T", v)
}

// labelValue encodes ENUM and SET text, which the table map and the text
// protocol give in the column's character set.
func labelValue(cs string, label []byte) (Value, error) {
	s, err := charset.Decode(cs, label)
	if err != nil {
		return Value{}, err
	}
	return textValue(s), nil
}

func textValue(s string) Value {
	return Value{JSON: s, SQL: sdk.QuoteString(s)}
}

// padBinary gives a BINARY(n) value its n bytes: the binlog carries it
// without its trailing zero bytes, which are part of the value.
func padBinary(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(append(make([]byte, 0, n), b...), make([]byte, n-len(b))...)
}

func binaryValue(b []byte) Value {
	return Value{JSON: base64.StdEncoding.EncodeToString(b), SQL: sdk.QuoteBytes(b)}
}
