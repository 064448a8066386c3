package rowcodec

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// appendVerbatim must agree with utf8.Valid and AppendJSONString wherever
// the bytes that stop its eight-at-a-time scan fall.
func TestAppendVerbatim(t *testing.T) {
	pieces := [][]byte{
		[]byte("a"), []byte("Z"), []byte(" "), []byte("\""), []byte("\\"), []byte("\n"), []byte("\t"), {0x01}, {0x1f}, {0x7f},
		[]byte("é"), []byte("€"), []byte("😀"), []byte("\uFFFD"),
		{0xff}, {0xc3}, {0xe2, 0x82}, {0xed, 0xa0, 0x80} /* a surrogate */, {0xc0, 0x80} /* overlong */, {0x80},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 20000 {
		var s []byte
		for range r.IntN(40) {
			if r.IntN(4) == 0 {
				s = append(s, pieces[r.IntN(len(pieces))]...)
			} else {
				s = append(s, 'a'+byte(r.IntN(26)))
			}
		}
		prefix := []byte("[1,")
		for _, utf8OK := range []bool{true, false} {
			got, ok := appendVerbatim(bytes.Clone(prefix), s, utf8OK)
			wantOK := utf8.Valid(s)
			if !utf8OK {
				wantOK = isASCIIBytes(s)
			}
			if ok != wantOK {
				t.Fatalf("case %d %q (utf8 %v): ok %v, want %v", n, s, utf8OK, ok, wantOK)
			}
			want := prefix
			if ok {
				want = AppendJSONString(bytes.Clone(prefix), s)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("case %d %q (utf8 %v): %q, want %q", n, s, utf8OK, got, want)
			}
		}
	}
}

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
