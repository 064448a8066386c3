package rowcodec

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/databus/databus/sdk"
	"github.com/go-mysql-org/go-mysql/mysql"
)

func TestEncode(t *testing.T) {
	tests := []struct {
		name     string
		col      Column
		in       any
		wantJSON any
		wantSQL  string
	}{
		{"null", Column{Type: mysql.MYSQL_TYPE_LONG}, nil, nil, "NULL"},
		{"int min", Column{Type: mysql.MYSQL_TYPE_LONG}, int32(math.MinInt32), json.Number("-2147483648"), "-2147483648"},
		{"tinyint unsigned", Column{Type: mysql.MYSQL_TYPE_TINY, Unsigned: true}, uint8(255), json.Number("255"), "255"},
		{"bigint unsigned max", Column{Type: mysql.MYSQL_TYPE_LONGLONG, Unsigned: true}, uint64(math.MaxUint64), "18446744073709551615", "18446744073709551615"},
		{"bigint min", Column{Type: mysql.MYSQL_TYPE_LONGLONG}, int64(math.MinInt64), "-9223372036854775808", "-9223372036854775808"},
		{"decimal", Column{Type: mysql.MYSQL_TYPE_NEWDECIMAL, Meta: 65<<8 | 30}, "-12345678901234567890123456789012345.123456789012345678901234567890", "-12345678901234567890123456789012345.123456789012345678901234567890", "-12345678901234567890123456789012345.123456789012345678901234567890"},
		{"double", Column{Type: mysql.MYSQL_TYPE_DOUBLE}, 0.1, json.Number("0.1"), "0.1"},
		{"float", Column{Type: mysql.MYSQL_TYPE_FLOAT}, float32(3.1415927), json.Number("3.1415927"), "3.1415927"},
		{"bit64", Column{Type: mysql.MYSQL_TYPE_BIT, Meta: 8 << 8}, int64(-1), "18446744073709551615", "18446744073709551615"},
		{"datetime", Column{Type: mysql.MYSQL_TYPE_DATETIME2, Meta: 6}, "2024-01-02 03:04:05.000006", "2024-01-02 03:04:05.000006", "'2024-01-02 03:04:05.000006'"},
		{"zero date", Column{Type: mysql.MYSQL_TYPE_DATE}, "0000-00-00", "0000-00-00", "'0000-00-00'"},
		{"enum", Column{Type: mysql.MYSQL_TYPE_ENUM, Enum: []string{"a", "b'c"}}, int64(2), "b'c", "'b''c'"},
		{"set", Column{Type: mysql.MYSQL_TYPE_SET, Set: []string{"x", "y", "z"}}, int64(5), "x,z", "'x,z'"},
		{"latin1 enum", Column{Type: mysql.MYSQL_TYPE_ENUM, Charset: "latin1", Enum: []string{"caf\xe9"}}, int64(1), "café", "_utf8mb4'café'"},
		{"latin1 set", Column{Type: mysql.MYSQL_TYPE_SET, Charset: "latin1", Set: []string{"\xe9", "x"}}, int64(3), "é,x", "_utf8mb4'é,x'"},
		{"empty set", Column{Type: mysql.MYSQL_TYPE_SET, Set: []string{"x"}}, int64(0), "", "''"},
		{"utf8mb4 text", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "utf8mb4"}, "héllo 😀", "héllo 😀", "_utf8mb4'héllo 😀'"},
		{"backslash", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "utf8mb4"}, `a\b`, `a\b`, "_utf8mb4 X'615c62'"},
		{"latin1", Column{Type: mysql.MYSQL_TYPE_STRING, Charset: "latin1"}, "caf\xe9 \x80", "café €", "_utf8mb4'café €'"},
		// MySQL's latin1 is Windows-1252 with its five undefined bytes
		// mapped to the C1 controls, as the server converts them.
		{"latin1 C1", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "latin1"}, "\x81\x8d\x8f\x90\x9d", "\u0081\u008d\u008f\u0090\u009d", "_utf8mb4'\u0081\u008d\u008f\u0090\u009d'"},
		{"latin2", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "latin2"}, "\xa1\xb1", "Ąą", "_utf8mb4'Ąą'"},
		{"sjis", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "sjis"}, "\x82\xa0\xb1", "あｱ", "_utf8mb4'あｱ'"},
		{"utf16 pair", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "utf16"}, "\xd8\x3d\xde\x00", "😀", "_utf8mb4'😀'"},
		{"binary(4) padded", Column{Type: mysql.MYSQL_TYPE_STRING, Meta: 0xfe04, Charset: "binary"}, "\x00\x01", "AAEAAA==", "X'00010000'"},
		{"binary", Column{Type: mysql.MYSQL_TYPE_BLOB, Meta: 2, Charset: "binary"}, []byte{0, 0xff, '\''}, "AP8n", "X'00ff27'"},
		{"empty binary", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "binary"}, "", "", "''"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(&tt.col, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.JSON != tt.wantJSON {
				t.Errorf("JSON: got %#v, want %#v", got.JSON, tt.wantJSON)
			}
			if got.SQL != tt.wantSQL {
				t.Errorf("SQL: got %s, want %s", got.SQL, tt.wantSQL)
			}
			// A consumer builds the literal from the event's JSON value
			// (sdk.Literal); it must be the one capture wrote.
			wire := sdk.Column{Name: "c", Type: tt.col.TypeName(), Charset: tt.col.Charset, Nullable: true}
			if lit, err := sdk.Literal(wire, got.JSON); err != nil || lit != got.SQL {
				t.Errorf("sdk.Literal of the JSON value %#v: %s, %v; capture wrote %s", got.JSON, lit, err, got.SQL)
			}
		})
	}
}

func TestEncodeRefusesWhatItCannotRepresent(t *testing.T) {
	bad := []struct {
		name string
		col  Column
		in   any
	}{
		{"invalid utf8", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "utf8mb4"}, "\xff"},
		{"unknown charset", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "gb18030"}, "x"},
		{"latin1 byte the server cannot convert", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "ascii"}, "\x80"},
		{"sjis lead byte alone", Column{Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "sjis"}, "a\x81"},
		{"enum index beyond", Column{Type: mysql.MYSQL_TYPE_ENUM, Enum: []string{"a"}}, int64(3)},
		{"unknown type", Column{Type: 0x20}, int64(1)},
	}
	for _, tt := range bad {
		if _, err := Encode(&tt.col, tt.in); err == nil {
			t.Errorf("%s: got no error", tt.name)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	if got, want := sdk.QuoteIdent("we`ird"), "`we``ird`"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
