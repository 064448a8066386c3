package sdk

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// The stored-row decoder gives what encoding/json with UseNumber gives.
func TestDecodeValuesEqualsEncodingJSON(t *testing.T) {
	for _, line := range []string{
		`[]`,
		`[1,"a",null,-2.5,"18446744073709551615"]`,
		`[0,"",null,1e-7,-0]`,
		`["q\"uote","back\\slash","nl\n\u0000","é😀","\u00e9\ud83d\ude00"," spaced ",3.4028235e+38]`,
		`[null,null]`,
		"[1,\"x\"]\n",
	} {
		dec := json.NewDecoder(bytes.NewReader([]byte(line)))
		dec.UseNumber()
		var want []any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		got, err := decodeValues([]byte(line), nil)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if len(want) == 0 && len(got) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", line, got, want)
		}
	}
	for _, bad := range []string{``, `{}`, `[1,`, `["open]`, `[true]`, `[1 2]`, `[--1]`, `[1,,2]`, `[1..2]`, `[1]x`, `["bad \u12"]`} {
		if got, err := decodeValues([]byte(bad), nil); err == nil {
			t.Errorf("%q: decoded to %#v, want an error", bad, got)
		}
	}
}

// RowsBefore counts the rows before a loading point across tables and
// parts: what `databus apply` compares its target with after a crash.
func TestRowsBefore(t *testing.T) {
	m := &Manifest{Rows: 17, Tables: []SnapshotTable{
		{Rows: 5, Objects: []SnapshotObject{{Rows: 3}, {Rows: 2}}},
		{Rows: 0, Objects: []SnapshotObject{}},
		{Rows: 12, Objects: []SnapshotObject{{Rows: 4}, {Rows: 4}, {Rows: 4}}},
	}}
	for _, tt := range []struct {
		p    SnapshotProgress
		want int64
	}{
		{SnapshotProgress{}, 0},
		{SnapshotProgress{Table: 0, Object: 1, Row: 1}, 4},
		{SnapshotProgress{Table: 2}, 5},
		{SnapshotProgress{Table: 2, Object: 2, Row: 3}, 5 + 8 + 3},
		{SnapshotProgress{Table: 3}, 17},
		{SnapshotProgress{Done: true}, 17},
	} {
		if got := m.RowsBefore(tt.p); got != tt.want {
			t.Errorf("RowsBefore(%+v) = %d, want %d", tt.p, got, tt.want)
		}
	}
	if got := m.Tables[2].RowsBefore(2); got != 8 {
		t.Errorf("table RowsBefore(2) = %d, want 8", got)
	}
}
