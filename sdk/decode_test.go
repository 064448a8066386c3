package sdk

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// decodeStd is what DecodeEvent returned before the fast path: the
// reference the fast path must equal.
func decodeStd(data []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	ev := new(Event)
	if err := dec.Decode(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// wireEvents are events as capture writes them, and variants at the
// edges of what the fast path decodes.
func wireEvents(t testing.TB) [][]byte {
	orders := Event{
		Version: 1, Source: "shop", Op: OpUpdate, Database: "shop", Table: "orders",
		Columns: []Column{{Name: "id", Type: "bigint unsigned"}, {Name: "note", Type: "varchar", Charset: "utf8mb4", Nullable: true},
			{Name: "total", Type: "decimal(12,2)", Nullable: true}, {Name: "meta", Type: "json", Charset: "utf8mb4", Nullable: true},
			{Name: "g", Type: "int", Nullable: true, Generated: true}, {Name: "f", Type: "double", Nullable: true}},
		PrimaryKey: []string{"id"}, Key: map[string]any{"id": json.Number("18446744073709551615")},
		Before: map[string]any{"id": json.Number("18446744073709551615"), "note": "tab\there, \"quoted\", back\\slash, <html> & é 😀 \u2028",
			"total": json.Number("-0.50"), "meta": `{"a":[1,2.5e-3]}`, "g": nil, "f": json.Number("1.5e+300")},
		After: map[string]any{"id": json.Number("18446744073709551615"), "note": "\x00\x1f control", "total": json.Number("0"),
			"meta": "null", "g": json.Number("7"), "f": json.Number("-0")},
		SQL:       "UPDATE `shop`.`orders` SET `note`='x' WHERE `id`=1",
		Position:  Position{File: "mysql-bin.000001", Offset: 4294967295, Row: 3, GTID: "0-1-99", ServerID: 1, ServerUUID: "u"},
		Timestamp: time.Date(2026, 11, 25, 2, 15, 39, 0, time.UTC),
		Txn:       Txn{ID: "0-1-99", Seq: 2, Last: true},
	}
	insert := orders
	insert.Op, insert.Before, insert.Snapshot = OpInsert, nil, true
	del := orders
	del.Op, del.After, del.PrimaryKey, del.Key = OpDelete, nil, nil, nil
	ddl := Event{Version: 1, Source: "shop", Op: OpDDL, Database: "shop", Table: "orders", SQL: "ALTER TABLE `shop`.`orders` ADD c INT",
		DDL: &DDL{Statement: "ALTER TABLE orders ADD c INT", DefaultDB: "shop", Kind: "alter_table", Qualified: true, Tables: []TableRef{{DB: "shop", Table: "orders"}}}}
	var out [][]byte
	for _, ev := range []Event{orders, insert, del, ddl} {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out,
		[]byte(` { "v" : 1 , "op":"insert", "columns":[], "pk":[], "key":null, "after":{"a":1,"a":"2"} } trailing`),
		[]byte(`{"V":1}`),
		[]byte(`{"v":2,"v":1}`),
		[]byte(`{"v":1.0}`),
		[]byte(`{"v":1,"sql":null}`),
		[]byte(`{"v":1,"sql":"\ud83d\ude00"}`),
		[]byte(`{"v":1,"sql":"bad \xff utf8"}`),
		[]byte(`{"v":1,"after":{"a":true}}`),
		[]byte(`{"v":1,"after":{"a":01}}`),
		[]byte(`{"v":1,"pos":{"offset":4294967296}}`),
		[]byte(`{"v":1,"ts":"yesterday"}`),
		[]byte(`{"v":1,"future":{"x":[1]}}`),
		[]byte(`{"v":1,`),
		[]byte(``),
	)
}

func TestDecodeEventFastPathEqualsEncodingJSON(t *testing.T) {
	fast := 0
	for _, data := range wireEvents(t) {
		want, wantErr := decodeStd(data)
		got, err := DecodeEvent(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s: DecodeEvent error %v, encoding/json %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", data, got, want)
		}
		if _, err := decodeFast(data); err == nil {
			fast++
		}
	}
	if fast < 4 {
		t.Fatalf("only %d of the events took the fast path: capture's row events must", fast)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, data := range wireEvents(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeFast(data)
		if err != nil {
			return
		}
		want, wantErr := decodeStd(data)
		if wantErr != nil {
			t.Fatalf("%q: the fast path decoded what encoding/json refuses (%v)", data, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", data, got, want)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	data := wireEvents(b)[0]
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeEvent(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEventEncodingJSON(b *testing.B) {
	data := wireEvents(b)[0]
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := decodeStd(data); err != nil {
			b.Fatal(err)
		}
	}
}
