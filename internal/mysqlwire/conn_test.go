package mysqlwire

import (
	"bytes"
	"strings"
	"testing"
)

// lenenc is a length-encoded string of the text protocol.
func lenenc(v string) []byte {
	n := len(v)
	var h []byte
	switch {
	case n < 0xfb:
		h = []byte{byte(n)}
	case n < 1<<16:
		h = []byte{0xfc, byte(n), byte(n >> 8)}
	case n < 1<<24:
		h = []byte{0xfd, byte(n), byte(n >> 8), byte(n >> 16)}
	default:
		h = []byte{0xfe, byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), 0, 0, 0, 0}
	}
	return append(h, v...)
}

func TestSplitRow(t *testing.T) {
	long, longer, huge := strings.Repeat("a", 300), strings.Repeat("b", 70_000), strings.Repeat("c", 1<<24)
	var p []byte
	for _, v := range []string{"42", "", long, longer, huge, "é"} {
		p = append(p, lenenc(v)...)
	}
	p = append(p, 0xfb) // NULL
	got, err := splitRow(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"42", "", long, longer, huge, "é"}
	if len(got) != len(want)+1 {
		t.Fatalf("got %d values, want %d", len(got), len(want)+1)
	}
	for i, w := range want {
		if !bytes.Equal(got[i], []byte(w)) || got[i] == nil {
			t.Errorf("value %d: got %d bytes (nil %v), want %d", i, len(got[i]), got[i] == nil, len(w))
		}
	}
	if got[len(want)] != nil {
		t.Errorf("NULL: got %q, want nil", got[len(want)])
	}
	// A value must not be able to grow into the next one.
	if cap(got[0]) != len(got[0]) {
		t.Errorf("value 0 has capacity %d beyond its %d bytes", cap(got[0]), len(got[0]))
	}
	for _, bad := range [][]byte{
		{5, 'a', 'b'},                   // shorter than its length
		{0xfc, 1},                       // a truncated length
		{0xff},                          // not a length
		append(lenenc("x"), 0xfd, 0, 0), // a truncated 3-byte length
	} {
		if vals, err := splitRow(nil, bad); err == nil {
			t.Errorf("% x: got %q, want an error", bad, vals)
		}
	}
}
