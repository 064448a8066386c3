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
	for _, bad := range []string{``, `{}`, `[1,`, `["open]`, `[true]`, `[1 2]`, `[--1]`, `[1,,2]`} {
		if got, err := decodeValues([]byte(bad), nil); err == nil {
			t.Errorf("%q: decoded to %#v, want an error", bad, got)
		}
	}
}
