package rowcodec_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

func TestColumnFromSchema(t *testing.T) {
	tests := []struct {
		dataType, columnType, charset string
		want                          rowcodec.Column
		typeName                      string
	}{
		{"bigint", "bigint(20) unsigned", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_LONGLONG, Unsigned: true}, "bigint unsigned"},
		{"int", "int(10) unsigned zerofill", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_LONG, Unsigned: true}, "int unsigned"},
		{"mediumint", "mediumint(9)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_INT24}, "mediumint"},
		{"decimal", "decimal(65,30)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_NEWDECIMAL, Meta: 65<<8 | 30}, "decimal(65,30)"},
		{"decimal", "decimal(5,2) unsigned zerofill", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_NEWDECIMAL, Meta: 5<<8 | 2, Unsigned: true}, "decimal(5,2) unsigned"},
		{"float", "float(7,2)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_FLOAT, Meta: 4}, "float"},
		{"double", "double unsigned", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_DOUBLE, Meta: 8, Unsigned: true}, "double unsigned"},
		{"bit", "bit(13)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_BIT, Meta: 1<<8 | 5}, "bit(13)"},
		{"bit", "bit(64)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_BIT, Meta: 8 << 8}, "bit(64)"},
		{"date", "date", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_DATE}, "date"},
		{"datetime", "datetime(6)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_DATETIME2, Meta: 6}, "datetime(6)"},
		{"timestamp", "timestamp", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_TIMESTAMP2}, "timestamp"},
		{"time", "time(3)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_TIME2, Meta: 3}, "time(3)"},
		{"year", "year(4)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_YEAR, Unsigned: true}, "year"},
		{"char", "char(10)", "utf8mb4", rowcodec.Column{Type: mysql.MYSQL_TYPE_STRING, Meta: 0xFE<<8 | 40, Charset: "utf8mb4"}, "char"},
		{"char", "char(255)", "utf8mb4", rowcodec.Column{Type: mysql.MYSQL_TYPE_STRING, Meta: 0xCE<<8 | 0xFC, Charset: "utf8mb4"}, "char"},
		{"binary", "binary(8)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_STRING, Meta: 0xFE<<8 | 8, Charset: "binary"}, "binary"},
		{"varchar", "varchar(300)", "utf8mb4", rowcodec.Column{Type: mysql.MYSQL_TYPE_VARCHAR, Meta: 1200, Charset: "utf8mb4"}, "varchar"},
		{"varbinary", "varbinary(300)", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_VARCHAR, Meta: 300, Charset: "binary"}, "varbinary"},
		{"tinytext", "tinytext", "latin1", rowcodec.Column{Type: mysql.MYSQL_TYPE_BLOB, Meta: 1, Charset: "latin1"}, "tinytext"},
		{"mediumblob", "mediumblob", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_BLOB, Meta: 3, Charset: "binary"}, "mediumblob"},
		{"longtext", "longtext", "utf8mb4", rowcodec.Column{Type: mysql.MYSQL_TYPE_BLOB, Meta: 4, Charset: "utf8mb4"}, "longtext"}, // also MariaDB's JSON
		{"enum", "enum('a''b','c\\\\d','e\\nf','n\\0x','x)y','unsigned','')", "utf8mb4",
			rowcodec.Column{Type: mysql.MYSQL_TYPE_ENUM, Meta: 0xF701, Charset: "utf8mb4", Enum: []string{"a'b", `c\d`, "e\nf", "n\x00x", "x)y", "unsigned", ""}}, "enum"},
		{"set", "set('a','b','c','d','e','f','g','h','i')", "latin1",
			rowcodec.Column{Type: mysql.MYSQL_TYPE_SET, Meta: 0xF802, Charset: "latin1", Set: strings.Split("a,b,c,d,e,f,g,h,i", ",")}, "set"},
		{"point", "point", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_GEOMETRY, Meta: 4, Charset: "binary"}, "geometry"},
		{"uuid", "uuid", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_STRING, Meta: 0xFE<<8 | 16, Charset: "binary"}, "binary"},
		{"inet4", "inet4", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_STRING, Meta: 0xFE<<8 | 4, Charset: "binary"}, "binary"},
		{"json", "json", "", rowcodec.Column{Type: mysql.MYSQL_TYPE_JSON, Meta: 4}, "json"}, // MySQL's JSON type
	}
	for _, tt := range tests {
		t.Run(tt.columnType, func(t *testing.T) {
			got, err := rowcodec.ColumnFromSchema("c", tt.dataType, tt.columnType, tt.charset, true)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Name, tt.want.Nullable = "c", true
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if got.TypeName() != tt.typeName {
				t.Errorf("TypeName %q, want %q", got.TypeName(), tt.typeName)
			}
		})
	}
}

func TestColumnFromSchemaRejects(t *testing.T) {
	for _, tt := range [][3]string{
		{"vector", "vector(3)", ""},
		{"xml", "xml", ""},
		{"enum", "enum('é')", "sjis"},
		{"enum", "enum('a','b)", "utf8mb4"},
		{"decimal", "decimal(x,2)", ""},
		{"varchar", "varchar(10)", "klingon"},
	} {
		_, err := rowcodec.ColumnFromSchema("odd`col", tt[0], tt[1], tt[2], true)
		if err == nil || !strings.Contains(err.Error(), "odd`col") || !strings.Contains(err.Error(), tt[1]) {
			t.Errorf("%s: got error %v, want one naming the column and type", tt[1], err)
		}
	}
}

func TestSelectExpr(t *testing.T) {
	for typ, want := range map[byte]string{
		mysql.MYSQL_TYPE_FLOAT:  "CAST(`a``b` AS DOUBLE)",
		mysql.MYSQL_TYPE_DOUBLE: "CAST(`a``b` AS DOUBLE)",
		mysql.MYSQL_TYPE_YEAR:   "YEAR(`a``b`)",
		mysql.MYSQL_TYPE_ENUM:   "`a``b`",
		mysql.MYSQL_TYPE_SET:    "`a``b`",
		mysql.MYSQL_TYPE_LONG:   "`a``b`",
		mysql.MYSQL_TYPE_BLOB:   "`a``b`",
		mysql.MYSQL_TYPE_STRING: "`a``b`",
	} {
		if got := rowcodec.SelectExpr(&rowcodec.Column{Name: "a`b", Type: typ, Charset: "utf8mb4"}); got != want {
			t.Errorf("type %d: %s, want %s", typ, got, want)
		}
	}
	for ct, want := range map[string]string{"binary(8)": "CAST(`b` AS BINARY(8))", "binary(255)": "CAST(`b` AS BINARY(255))", "uuid": "CAST(`b` AS BINARY(16))"} {
		dataType, _, _ := strings.Cut(ct, "(")
		c, err := rowcodec.ColumnFromSchema("b", dataType, ct, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if got := rowcodec.SelectExpr(&c); got != want {
			t.Errorf("%s: %s, want %s", ct, got, want)
		}
	}
}

func TestFromText(t *testing.T) {
	col := func(dataType, columnType, charset string) *rowcodec.Column {
		c, err := rowcodec.ColumnFromSchema("c", dataType, columnType, charset, true)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	tests := []struct {
		col  *rowcodec.Column
		raw  string
		want any
	}{
		{col("tinyint", "tinyint(4)", ""), "-128", int8(-128)},
		{col("tinyint", "tinyint(3) unsigned", ""), "255", uint8(255)},
		{col("mediumint", "mediumint(8) unsigned", ""), "16777215", uint32(16777215)},
		{col("mediumint", "mediumint(9)", ""), "-8388608", int32(-8388608)},
		{col("int", "int(10) unsigned zerofill", ""), "0000000042", uint32(42)},
		{col("bigint", "bigint(20) unsigned", ""), "18446744073709551615", uint64(math.MaxUint64)},
		{col("year", "year(4)", ""), "2155", 2155},
		{col("year", "year(4)", ""), "0", 0},
		{col("year", "year(2)", ""), "1900", 0}, // YEAR(2)'s zero year
		{col("decimal", "decimal(5,2) unsigned zerofill", ""), "000.01", "0.01"},
		{col("decimal", "decimal(5,2) unsigned zerofill", ""), "012.50", "12.50"},
		{col("decimal", "decimal(5,0)", ""), "-7", "-7"},
		{col("decimal", "decimal(5,5)", ""), "-0.00001", "-0.00001"},
		{col("float", "float", ""), "0.10000000149011612", float32(0.1)},
		{col("float", "float", ""), "3.4028234663852886e38", float32(math.MaxFloat32)},
		{col("double", "double", ""), "5e-324", math.SmallestNonzeroFloat64},
		{col("bit", "bit(1)", ""), "\x01", int64(1)},
		{col("bit", "bit(64)", ""), "\xff\xff\xff\xff\xff\xff\xff\xff", int64(-1)},
		{col("bit", "bit(13)", ""), "\x1f\xff", int64(8191)},
		{col("time", "time(6)", ""), "838:59:59.000000", "838:59:59"},
		{col("time", "time(6)", ""), "00:00:00.000000", "00:00:00"},
		{col("time", "time(3)", ""), "-00:00:00.500", "-00:00:00.500"},
		{col("datetime", "datetime(6)", ""), "0000-00-00 00:00:00.000000", "0000-00-00 00:00:00.000000"},
		{col("timestamp", "timestamp(2)", ""), "2024-01-01 00:00:00.00", "2024-01-01 00:00:00.00"},
		{col("enum", "enum('a','b,c')", "utf8mb4"), "b,c", []byte("b,c")},
		{col("enum", "enum('a','b')", "utf8mb4"), "", []byte("")}, // an invalid value
		{col("enum", "enum('a','é')", "latin1"), "\xe9", []byte("\xe9")},
		{col("enum", "enum('?')", "utf8mb4"), "😀", []byte("😀")}, // information_schema shows 😀 as ?
		{col("set", "set('a','b')", "utf8mb4"), "a,b", []byte("a,b")},
		{col("set", "set('a','b')", "utf8mb4"), "", []byte("")},
		{col("set", "set("+valueList("m", 64)+")", "utf8mb4"), "m63", []byte("m63")},
		{col("char", "char(5)", "utf8mb4"), "ab   ", []byte("ab")}, // PAD_CHAR_TO_FULL_LENGTH
		{col("binary", "binary(4)", ""), "a\x00b\x00", []byte("a\x00b\x00")},
		{col("varchar", "varchar(5)", "utf8mb4"), "ab  ", []byte("ab  ")},
		{col("varchar", "varchar(5)", "latin1"), "a\"b\\", []byte("a\"b\\")},
		{col("varchar", "varchar(5)", "latin1"), "\x80\xe9", []byte("\x80\xe9")},
		{col("varchar", "varchar(9)", "latin1"), "sku-00042", []byte("sku-00042")},
		{col("varchar", "varchar(5)", "swe7"), "a[b]", []byte("a[b]")}, // swe7's [ is Ä
		{col("enum", "enum('a','b','c')", "utf8mb4"), "c", []byte("c")},
		{col("longblob", "longblob", ""), "", []byte("")},
		// MySQL prints JSON spaced; go-mysql marshals the binary form.
		{col("json", "json", ""), `{"b": [1, 2.0, -3, 18446744073709551615, 1e300, 0.1], "a": "x<y é", "c": null, "d": {"z": true, "y": false}}`,
			`{"a":"x\u003cy é","b":[1,2,-3,18446744073709551615,1e+300,0.1],"c":null,"d":{"y":false,"z":true}}`},
	}
	for _, tt := range tests {
		got, err := rowcodec.FromText(tt.col, []byte(tt.raw))
		if err != nil {
			t.Errorf("%s %q: %v", tt.col.TypeName(), tt.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %q: got %#v, want %#v", tt.col.TypeName(), tt.raw, got, tt.want)
		}
		// The snapshot's direct path gives the JSON Encode gives.
		ev, err := rowcodec.Encode(tt.col, got)
		if err != nil {
			t.Errorf("%s %q: Encode: %v", tt.col.TypeName(), tt.raw, err)
			continue
		}
		direct, err := rowcodec.AppendTextJSON(nil, tt.col, []byte(tt.raw))
		if want := rowcodec.AppendJSONValue(nil, ev.JSON); err != nil || string(direct) != string(want) {
			t.Errorf("%s %q: AppendTextJSON gives %s (%v), Encode %s", tt.col.TypeName(), tt.raw, direct, err, want)
		}
	}
	if v, err := rowcodec.FromText(col("int", "int(11)", ""), nil); v != nil || err != nil {
		t.Errorf("NULL: got %#v, %v", v, err)
	}
	for _, bad := range []struct {
		col *rowcodec.Column
		raw string
	}{
		{col("tinyint", "tinyint(4)", ""), "128"},
		{col("decimal", "decimal(5,2)", ""), "1e5"},
		{col("float", "float", ""), "0.1"}, // not read through SelectExpr
		{col("bit", "bit(8)", ""), ""},
		{col("json", "json", ""), "{"},
	} {
		if v, err := rowcodec.FromText(bad.col, []byte(bad.raw)); err == nil {
			t.Errorf("%s %q: got %#v, want an error", bad.col.TypeName(), bad.raw, v)
		}
	}
	// An ENUM or SET text that is not valid in its character set is
	// refused.
	for _, c := range []*rowcodec.Column{col("enum", "enum('a')", "utf8mb4"), col("set", "set('a')", "utf8mb4")} {
		if b, err := rowcodec.AppendTextJSON(nil, c, []byte("\xff")); err == nil {
			t.Errorf("%s \\xff: AppendTextJSON gives %s, want an error", c.TypeName(), b)
		}
	}
}

// The integration test below writes rows of every type to a real MariaDB
// and checks that snapshot reading (information_schema + SELECT) and binlog
// decoding (TABLE_MAP + WRITE_ROWS through go-mysql, configured as capture
// configures it) give identical columns and values.

// extraDDL has the types and shapes capture's torture table lacks.
var extraDDL = `CREATE TABLE torture.extra (
 id INT NOT NULL PRIMARY KEY,
 dtm1 DATETIME(1), dtm2 DATETIME(2), dtm3 DATETIME(3), dtm4 DATETIME(4), dtm5 DATETIME(5), ts3 TIMESTAMP(3) NULL DEFAULT NULL,
 tm1 TIME(1), tm2 TIME(2), tm3 TIME(3), tm4 TIME(4), tm5 TIME(5), tm6 TIME(6),
 y2 YEAR(2), y4 YEAR(4),
 d2 DOUBLE(10,2), d30 DOUBLE(30,25), f2 FLOAT(7,2), fu FLOAT UNSIGNED, du DOUBLE UNSIGNED,
 dz DECIMAL(5,2) ZEROFILL, d55 DECIMAL(5,5), du4 DECIMAL(10,4) UNSIGNED, iz INT ZEROFILL, tz TINYINT(3) UNSIGNED ZEROFILL, bz BIGINT ZEROFILL,
 c255 CHAR(255), c3 CHAR(3) CHARACTER SET latin1, c8 CHAR(8) CHARACTER SET utf8mb3, av VARCHAR(20) CHARACTER SET ascii,
 vl VARCHAR(300) CHARACTER SET latin1, bn255 BINARY(255), bn3 BINARY(3),
 tt TINYTEXT, mt MEDIUMTEXT, tb TINYBLOB, mb MEDIUMBLOB,
 ew ENUM('a''b','c\\d','e\nf','g	h','é€','unsigned','x)y',''),
 el ENUM('a','é') CHARACTER SET latin1, sl SET('a','é','ü') CHARACTER SET latin1,
 s64 SET(` + valueList("m", 64) + `), s9 SET(` + valueList("m", 9) + `), s20 SET(` + valueList("m", 20) + `), s40 SET(` + valueList("m", 40) + `),
 ebig ENUM(` + valueList("v", 300) + `),
 ls LINESTRING, poly POLYGON, mpt MULTIPOINT, mls MULTILINESTRING, mpoly MULTIPOLYGON, gc GEOMETRYCOLLECTION,
 ` + "`we``ird`" + ` INT,
 b2 BIT(2), b8 BIT(8), b9 BIT(9), b33 BIT(33),
 uu UUID, i6 INET6, i4 INET4
) DEFAULT CHARSET=utf8mb4`

// extraRows are the rows of extra, column -> SQL literal; a column a row
// leaves out is NULL.
var extraRows = []map[string]string{
	{ // fractions of zero, and a value for every column
		"dtm1": "'2024-01-02 03:04:05'", "dtm2": "'2024-01-02 03:04:05'", "dtm3": "'2024-01-02 03:04:05'", "dtm4": "'2024-01-02 03:04:05'",
		"dtm5": "'0000-00-00 00:00:00'", "ts3": "'2024-01-02 03:04:05'",
		"tm1": "'00:00:00'", "tm2": "'-838:59:59'", "tm3": "'12:00:00'", "tm4": "'-00:00:00.5'", "tm5": "'-00:00:01.00001'", "tm6": "'838:59:59'",
		"y2": "2000", "y4": "0",
		"d2": "1.01", "d30": "3e-20", "f2": "12345.67", "fu": "1.5", "du": "1e300",
		"dz": "0.01", "d55": "-0.12345", "du4": "123456.0001", "iz": "42", "tz": "7", "bz": "1",
		"c255": "'padded   '", "c3": "'é€'", "c8": "'ünï'", "av": "'plain'",
		"vl": "'latin1 €ÿ'", "bn255": "X'0001'", "bn3": "X'610000'",
		"tt": "'tiny'", "mt": "'medium'", "tb": "X'00'", "mb": "X'FF00'",
		"ew": "'a''b'", "el": "'é'", "sl": "'a,é,ü'", "s64": "'" + strings.ReplaceAll(valueList("m", 64), "'", "") + "'",
		"s9": "'m8'", "s20": "'m0,m19'", "s40": "'m39'", "ebig": "'v299'",
		"ls": "ST_GeomFromText('LINESTRING(0 0,1 1,2 0)')", "poly": "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')",
		"mpt": "ST_GeomFromText('MULTIPOINT(0 0,1 1)')", "mls": "ST_GeomFromText('MULTILINESTRING((0 0,1 1),(2 2,3 3))')",
		"mpoly":  "ST_GeomFromText('MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))')",
		"gc":     "ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 2),LINESTRING(0 0,1 1))')",
		"we`ird": "1", "b2": "b'11'", "b8": "255", "b9": "256", "b33": "8589934591",
		"uu": "'6ccd780c-baba-1026-9564-5b8c656024db'", "i6": "'2001:db8::ff00:42:8329'", "i4": "'10.0.0.1'",
	},
	{
		"dtm1": "'2024-01-02 03:04:05.1'", "dtm2": "'1999-12-31 23:59:59.99'", "dtm3": "'2024-00-00 00:00:00.001'", "dtm4": "'9999-12-31 23:59:59.9999'",
		"dtm5": "'0000-00-00 00:00:00.00001'", "ts3": "'2038-01-19 08:44:07.999'",
		"tm1": "'-00:00:00.1'", "tm2": "'00:00:00.01'", "tm3": "'-1:00:00.001'", "tm4": "'100:00:00.0001'", "tm5": "'0:0:0.00001'", "tm6": "'-0:0:0.000001'",
		"y2": "1970", "y4": "1901", "d2": "-12345678.99", "d30": "1.234e-19", "f2": "-0.01", "fu": "3.4028235e38" /* FLT_MAX, clipped */, "du": "0",
		"dz": "999.99", "d55": "0.00001", "du4": "0", "iz": "4294967295", "tz": "255", "bz": "18446744073709551615",
		"c255": "'😀'", "c3": "X'80'", "c8": "''", "av": "''", "vl": "''", "bn255": "''", "bn3": "X'000000'",
		"tt": "''", "mt": "''", "tb": "''", "mb": "''",
		"ew": "'c\\\\d'", "el": "'a'", "sl": "''", "s64": "''", "s9": "'m0,m1,m2,m3,m4,m5,m6,m7,m8'", "s20": "''", "ebig": "'v0'",
		"we`ird": "-1", "b2": "0", "b8": "0", "b9": "511", "b33": "0",
		"uu": "'123e4567-e89b-42d3-a456-426655440000'", "i6": "'::'", "i4": "'255.0.0.0'",
	},
	{"ew": "'e\\nf'", "y2": "3000" /* out of range: the zero year */, "y4": "3000", "el": "'nope'" /* invalid: index 0 */},
	{"ew": "'g\th'", "y2": "69", "y4": "2155", "uu": "'00000000-0000-0000-0000-000000000000'", "i6": "'::1'", "i4": "'0.0.0.0'"},
	{"ew": "'é€'", "y2": "'00'"},
	{"ew": "'unsigned'"},
	{"ew": "'x)y'"},
	{"ew": "''"},
	{"ew": "'invalid'"},
	{},
}

// valueList returns 'p0','p1',… with n values.
func valueList(prefix string, n int) string {
	v := make([]string, n)
	for i := range v {
		v[i] = fmt.Sprintf("'%s%d'", prefix, i)
	}
	return strings.Join(v, ",")
}

func insertExtra(columns []string) []string {
	var stmts []string
	for i, r := range extraRows {
		vals := []string{strconv.Itoa(i + 1)}
		for _, c := range columns[1:] {
			v, ok := r[c]
			if !ok {
				v = "NULL"
			}
			vals = append(vals, v)
		}
		quoted := make([]string, len(columns))
		for j, c := range columns {
			quoted[j] = sdk.QuoteIdent(c)
		}
		stmts = append(stmts, "INSERT INTO torture.extra ("+strings.Join(quoted, ",")+") VALUES ("+strings.Join(vals, ",")+")")
	}
	return stmts
}

const randomDDL = `CREATE TABLE torture.rnd (
 id INT NOT NULL PRIMARY KEY,
 f FLOAT, d DOUBLE, d65 DECIMAL(65,30), d12 DECIMAL(12,4), d0 DECIMAL(30,0),
 tm6 TIME(6), tm2 TIME(2), tm0 TIME, dt6 DATETIME(6), dt3 DATETIME(3), ts6 TIMESTAMP(6) NULL DEFAULT NULL, ts1 TIMESTAMP(1) NULL DEFAULT NULL,
 b64 BIT(64), bi BIGINT, biu BIGINT UNSIGNED, i24 MEDIUMINT
)`

// randomRows returns INSERT statements for n rows of random values.
func randomRows(r *rand.Rand, n int) []string {
	digits := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		return string(b)
	}
	sign := func() string {
		if r.IntN(2) == 0 {
			return "-"
		}
		return ""
	}
	float32Lit := func() string {
		for {
			f := math.Float32frombits(r.Uint32())
			if r.IntN(8) == 0 {
				f = float32(r.Float64())
			}
			if !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
				return strconv.FormatFloat(float64(f), 'g', -1, 32)
			}
		}
	}
	float64Lit := func() string {
		for {
			f := math.Float64frombits(r.Uint64())
			if r.IntN(8) == 0 {
				f = r.NormFloat64() * 1000
			}
			if !math.IsNaN(f) && !math.IsInf(f, 0) {
				return strconv.FormatFloat(f, 'g', -1, 64)
			}
		}
	}
	timeLit := func() string {
		frac := digits(6)
		if r.IntN(4) == 0 {
			frac = "000000"
		}
		return fmt.Sprintf("'%s%d:%02d:%02d.%s'", sign(), r.IntN(839), r.IntN(60), r.IntN(60), frac)
	}
	datetimeLit := func() string {
		return fmt.Sprintf("'%04d-%02d-%02d %02d:%02d:%02d.%s'", r.IntN(10000), r.IntN(13), r.IntN(29), r.IntN(24), r.IntN(60), r.IntN(60), digits(6))
	}
	var stmts []string
	var rows []string
	for id := 1; id <= n; id++ {
		vals := []string{
			strconv.Itoa(id), float32Lit(), float64Lit(),
			"'" + sign() + digits(r.IntN(36)) + "." + digits(r.IntN(31)) + "0'", sign() + digits(1+r.IntN(8)) + "." + digits(4), sign() + digits(1+r.IntN(30)),
			timeLit(), timeLit(), timeLit(), datetimeLit(), datetimeLit(),
			fmt.Sprintf("FROM_UNIXTIME(%d.%s)", 1+r.Int64N(math.MaxInt32-1), digits(6)), fmt.Sprintf("FROM_UNIXTIME(%d.%s)", 1+r.Int64N(math.MaxInt32-1), digits(1)),
			strconv.FormatUint(r.Uint64(), 10), strconv.FormatInt(int64(r.Uint64()), 10), strconv.FormatUint(r.Uint64(), 10),
			strconv.Itoa(r.IntN(1<<24) - 1<<23),
		}
		rows = append(rows, "("+strings.Join(vals, ",")+")")
		if len(rows) == 100 || id == n {
			stmts = append(stmts, "INSERT INTO torture.rnd VALUES "+strings.Join(rows, ","))
			rows = nil
		}
	}
	return stmts
}

func TestSnapshotDecodingEqualsBinlogDecoding(t *testing.T) {
	m := testenv.StartMariaDB(t)
	db := m.DB(t)
	m.Exec(t, "CREATE DATABASE torture", testenv.TortureDDL, extraDDL, randomDDL, "CREATE TABLE torture.done (id INT)")
	collations := map[uint64]string{}
	queryRows(t, db, "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL", func(v []string) {
		id, _ := strconv.ParseUint(v[0], 10, 64)
		collations[id] = v[1]
	})
	// CHAR and VARCHAR lengths are in bytes in the table map: every
	// character set's longest character must be known.
	queryRows(t, db, "SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS", func(v []string) {
		c, err := rowcodec.ColumnFromSchema("v", "varchar", "varchar(1)", v[0], true)
		if err != nil || strconv.Itoa(int(c.Meta)) != v[1] {
			t.Errorf("character set %s of %s bytes at most: VARCHAR(1) has meta %d (%v)", v[0], v[1], c.Meta, err)
		}
	})
	var extraCols []string
	queryRows(t, db, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'torture' AND TABLE_NAME = 'extra' ORDER BY ORDINAL_POSITION",
		func(v []string) { extraCols = append(extraCols, v[0]) })

	var file, pos, doDB, ignoreDB string
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	offset, _ := strconv.ParseUint(pos, 10, 32)

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROWCODEC_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("random rows from ROWCODEC_SEED=%d", seed)
	// Written as capture's test writes: lax sql_mode for zero dates and
	// out-of-range values, and a session time zone that must not leak into
	// TIMESTAMP values.
	const randomCount = 500
	session := "SET SESSION sql_mode = ''; SET SESSION time_zone = '+05:30'; "
	stmts := []string{session + "INSERT INTO torture.t (" + testenv.TortureCols + ") VALUES " + strings.Join(testenv.TortureRows, ",")}
	for _, s := range append(insertExtra(extraCols), randomRows(rand.New(rand.NewPCG(seed, 1)), randomCount)...) {
		stmts = append(stmts, session+s)
	}
	m.Exec(t, append(stmts, "INSERT INTO torture.done VALUES (1)")...)

	binlog := readBinlog(t, m, mysql.Position{Name: file, Pos: uint32(offset)}, "torture", "done", collations)

	// Read as a snapshot does, under the default sql_mode and under one
	// that pads CHAR values.
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET NAMES binary", "SET time_zone = '+00:00'"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	for table, rows := range map[string]int{"t": len(testenv.TortureRows), "extra": len(extraRows), "rnd": randomCount} {
		bt := binlog[table]
		if bt == nil {
			bt = &binlogTable{}
		}
		if len(bt.rows) != rows {
			t.Fatalf("torture.%s: %d rows in the binlog, want %d", table, len(bt.rows), rows)
		}
		cols := schemaColumns(t, conn, "torture", table)
		if len(cols) != len(bt.cols) {
			t.Fatalf("%s: %d columns in information_schema, %d in the table map", table, len(cols), len(bt.cols))
		}
		for i := range cols {
			if !reflect.DeepEqual(cols[i], bt.cols[i]) {
				t.Errorf("%s.%s:\nschema %+v\nbinlog %+v", table, cols[i].Name, cols[i], bt.cols[i])
			}
			if cols[i].TypeName() != bt.cols[i].TypeName() {
				t.Errorf("%s.%s: TypeName %q from the schema, %q from the binlog", table, cols[i].Name, cols[i].TypeName(), bt.cols[i].TypeName())
			}
		}
		for _, mode := range []string{"", "PAD_CHAR_TO_FULL_LENGTH"} {
			if _, err := conn.ExecContext(t.Context(), "SET SESSION sql_mode = '"+mode+"'"); err != nil {
				t.Fatal(err)
			}
			snap := selectRows(t, conn, "torture", table, cols)
			if len(snap) != len(bt.rows) {
				t.Fatalf("%s: %d rows selected, %d in the binlog", table, len(snap), len(bt.rows))
			}
			failures := 0
			for r := range snap {
				for i := range cols {
					if msg := compare(&cols[i], snap[r][i], &bt.cols[i], bt.rows[r][i]); msg != "" && failures < 50 {
						failures++
						t.Errorf("sql_mode %q: %s row %v column %s (%s): %s", mode, table, bt.rows[r][0], cols[i].Name, cols[i].TypeName(), msg)
					}
				}
			}
		}
	}
}

// MariaDB's metadata shows ENUM and SET values in utf8mb3, with ? for
// characters beyond the Basic Multilingual Plane; even SHOW CREATE TABLE
// does. A snapshot reads the values' text, which the server gives right,
// so its JSON is the binlog's.
func TestEnumValuesBeyondTheBMP(t *testing.T) {
	m := testenv.StartMariaDB(t)
	db := m.DB(t)
	m.Exec(t, "CREATE DATABASE lossy", "CREATE TABLE lossy.t (id INT PRIMARY KEY, e ENUM('😀','?'), s SET('a','😀')) DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE lossy.done (id INT)")
	var file, pos, doDB, ignoreDB string
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	offset, _ := strconv.ParseUint(pos, 10, 32)
	m.Exec(t, "INSERT INTO lossy.t VALUES (1, '?', 'a'), (2, '😀', 'a,😀'), (3, '😀', '😀')", "INSERT INTO lossy.done VALUES (1)")
	collations := map[uint64]string{}
	queryRows(t, db, "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL", func(v []string) {
		id, _ := strconv.ParseUint(v[0], 10, 64)
		collations[id] = v[1]
	})
	bt := readBinlog(t, m, mysql.Position{Name: file, Pos: uint32(offset)}, "lossy", "done", collations)["t"]
	if bt == nil || len(bt.rows) != 3 {
		t.Fatalf("lossy.t in the binlog: %+v", bt)
	}

	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "SET NAMES binary"); err != nil {
		t.Fatal(err)
	}
	cols := schemaColumns(t, conn, "lossy", "t")
	if !reflect.DeepEqual(cols[1].Enum, []string{"?", "?"}) {
		t.Logf("information_schema now shows %q: ENUM values beyond the BMP may be supported", cols[1].Enum)
	}
	var got, want []string
	for r, row := range selectRows(t, conn, "lossy", "t", cols) {
		var line, binlogLine []byte
		for i := 1; i < len(cols); i++ {
			raw, _ := row[i].([]byte)
			if line, err = rowcodec.AppendTextJSON(append(line, ' '), &cols[i], raw); err != nil {
				t.Fatal(err)
			}
			ev, err := rowcodec.Encode(&bt.cols[i], bt.rows[r][i])
			if err != nil {
				t.Fatal(err)
			}
			binlogLine = rowcodec.AppendJSONValue(append(binlogLine, ' '), ev.JSON)
		}
		got, want = append(got, string(line)), append(want, string(binlogLine))
	}
	if !reflect.DeepEqual(got, want) || want[1] != ` "😀" "a,😀"` {
		t.Errorf("snapshot JSON %q, binlog JSON %q (row 2 must be 😀, a,😀)", got, want)
	}
}

// compare reports how a snapshot value differs from the binlog value of
// the same stored value: in Go value (strings and bytes alike) or in
// encoding. It returns "" when they agree.
func compare(sc *rowcodec.Column, sv any, bc *rowcodec.Column, bv any) string {
	norm := func(v any) any {
		if b, ok := v.([]byte); ok {
			return string(b)
		}
		return v
	}
	show := func(v any) string {
		s := fmt.Sprintf("%#v (%T)", norm(v), v)
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		return s
	}
	if b, ok := bv.(string); ok && sc.Type == mysql.MYSQL_TYPE_STRING && sc.Charset == "binary" {
		// The binlog drops BINARY's trailing zero bytes; Encode puts
		// them back (compared below).
		bv = norm(sv)
		if strings.TrimRight(bv.(string), "\x00") != b {
			return fmt.Sprintf("FromText gives %s, the binlog %s", show(sv), show(b))
		}
	}
	// FromText gives an ENUM or SET value as its text, the binlog as its
	// index or bitmask: only their encodings (below) must agree.
	isLabel := sc.Type == mysql.MYSQL_TYPE_ENUM || sc.Type == mysql.MYSQL_TYPE_SET
	if !isLabel && !reflect.DeepEqual(norm(sv), norm(bv)) {
		return fmt.Sprintf("FromText gives %s, the binlog %s", show(sv), show(bv))
	}
	se, serr := rowcodec.Encode(sc, sv)
	be, berr := rowcodec.Encode(bc, bv)
	if fmt.Sprint(serr) != fmt.Sprint(berr) {
		return fmt.Sprintf("Encode: snapshot error %v, binlog error %v", serr, berr)
	}
	if fmt.Sprintf("%#v", se.JSON) != fmt.Sprintf("%#v", be.JSON) || se.SQL != be.SQL {
		return fmt.Sprintf("Encode: snapshot %s %.200s, binlog %s %.200s", show(se.JSON), se.SQL, show(be.JSON), be.SQL)
	}
	return ""
}

// binlogTable is a table as the binlog shows it: the columns capture builds
// from its table map, and its inserted rows.
type binlogTable struct {
	cols []rowcodec.Column
	rows [][]any
}

// readBinlog decodes the binlog from pos, as capture does, until the first
// row of table sentinel, and returns schema's tables by name.
func readBinlog(t *testing.T, m *testenv.MariaDB, pos mysql.Position, schema, sentinel string, collations map[uint64]string) map[string]*binlogTable {
	t.Helper()
	// capture/capture.go's decoding settings: TIMESTAMP as UTC text, no
	// ParseTime, no UseDecimal.
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:                m.ServerID + 1000,
		Flavor:                  "mariadb",
		Host:                    m.Host,
		Port:                    uint16(m.Port),
		User:                    "root",
		TimestampStringLocation: time.UTC,
		Logger:                  slog.New(slog.DiscardHandler),
	})
	defer syncer.Close()
	streamer, err := syncer.StartSync(pos)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tables := map[string]*binlogTable{}
	byID := map[uint64]*binlogTable{}
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			t.Fatalf("reading the binlog: %v", err)
		}
		switch e := ev.Event.(type) {
		case *replication.TableMapEvent:
			if string(e.Schema) != schema {
				continue
			}
			if string(e.Table) == sentinel {
				return tables
			}
			bt := tables[string(e.Table)]
			if bt == nil {
				bt = &binlogTable{}
				tables[string(e.Table)] = bt
			}
			bt.cols = binlogColumns(t, e, collations)
			byID[e.TableID] = bt
		case *replication.RowsEvent:
			bt := byID[e.TableID]
			if bt == nil {
				continue
			}
			for _, row := range e.Rows {
				// The decoder's strings may alias its buffers.
				copied := make([]any, len(row))
				for i, v := range row {
					switch x := v.(type) {
					case string:
						copied[i] = strings.Clone(x)
					case []byte:
						copied[i] = bytes.Clone(x)
					default:
						copied[i] = v
					}
				}
				bt.rows = append(bt.rows, copied)
			}
		}
	}
}

// binlogColumns builds a table's columns from its table map exactly as
// capture's newTable (capture/rows.go) does.
func binlogColumns(t *testing.T, tm *replication.TableMapEvent, collations map[uint64]string) []rowcodec.Column {
	t.Helper()
	cols, err := rowcodec.ColumnsFromTableMap(tm, collations)
	if err != nil {
		t.Fatalf("table map of %s: %v", tm.Table, err)
	}
	return cols
}

// schemaColumns builds schema.table's columns as a snapshot does.
func schemaColumns(t *testing.T, conn *sql.Conn, schema, table string) []rowcodec.Column {
	t.Helper()
	var cols []rowcodec.Column
	rows, err := conn.QueryContext(t.Context(), "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COALESCE(CHARACTER_SET_NAME, ''), IS_NULLABLE "+
		"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", schema, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, dataType, columnType, charset, nullable string
		if err := rows.Scan(&name, &dataType, &columnType, &charset, &nullable); err != nil {
			t.Fatal(err)
		}
		c, err := rowcodec.ColumnFromSchema(name, dataType, columnType, charset, nullable == "YES")
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols
}

// selectRows reads schema.table with SelectExpr and decodes it with
// FromText, in primary key order.
func selectRows(t *testing.T, conn *sql.Conn, schema, table string, cols []rowcodec.Column) [][]any {
	t.Helper()
	exprs := make([]string, len(cols))
	for i := range cols {
		exprs[i] = rowcodec.SelectExpr(&cols[i])
	}
	rows, err := conn.QueryContext(t.Context(), "SELECT "+strings.Join(exprs, ", ")+" FROM "+schema+"."+table+" ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	var out [][]any
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		row := make([]any, len(cols))
		for i := range cols {
			var r []byte
			if raw[i] != nil {
				r = bytes.Clone(raw[i]) // RawBytes are reused by the next row
			}
			v, err := rowcodec.FromText(&cols[i], r)
			if err != nil {
				t.Fatalf("%s.%s %q: %v", table, cols[i].Name, raw[i], err)
			}
			row[i] = v
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func queryRows(t *testing.T, db *sql.DB, q string, f func([]string)) {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n, _ := rows.Columns()
	vals := make([]sql.NullString, len(n))
	dest := make([]any, len(n))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		s := make([]string, len(vals))
		for i, v := range vals {
			s[i] = v.String
		}
		f(s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
