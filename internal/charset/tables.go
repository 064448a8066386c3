package charset

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
)

// The tables hold, for each table-driven character set, every byte
// sequence the server converts to one character, with that character.
// A file is gzip of entries sorted by code, each the uvarint increase of
// the code over the previous entry's, then the zigzag varint change of
// the character. A code is the sequence's bytes read as a big-endian
// number; the sequence is 1, 2 or 3 bytes long as the code is below 0x100,
// below 0x10000 or above (the lead byte of a multi-byte character is
// never below 0x80).
//
//go:embed tables/*.bin
var tableFiles embed.FS

// Table is the mapping of one table-driven character set.
type Table struct {
	single [256]rune // -1: no character of one byte
	double []rune    // (lead-0x80)<<8 | trail → character, -1: none
	triple map[uint32]rune
	// asciiSame: bytes below 0x80 are ASCII.
	asciiSame bool

	encOnce sync.Once
	enc     map[rune][]byte
}

// lazyTable is a character set's table, read on first use.
type lazyTable struct {
	once sync.Once
	t    *Table
	err  error
}

// tables holds a lazyTable for every character set databus knows: a
// lookup takes no lock, as it happens for every value.
var tables = func() map[string]*lazyTable {
	m := make(map[string]*lazyTable, len(maxLen))
	for name := range maxLen {
		m[name] = &lazyTable{}
	}
	return m
}()

// table returns the loaded table of charset.
func table(charset string) (*Table, error) {
	l, ok := tables[charset]
	if !ok {
		return nil, fmt.Errorf("character set %s is not supported: databus converts %s", charset, supported())
	}
	l.once.Do(func() { l.t, l.err = loadTable(charset) })
	return l.t, l.err
}

func loadTable(charset string) (*Table, error) {
	raw, err := tableFiles.ReadFile("tables/" + charset + ".bin")
	if err != nil {
		return nil, fmt.Errorf("character set %s has no embedded table: %w", charset, err)
	}
	entries, err := ReadEntries(raw)
	if err != nil {
		return nil, fmt.Errorf("character set %s: embedded table: %w", charset, err)
	}
	return newTable(entries), nil
}

// Entry maps one byte sequence, as a code (see the file format), to a
// character.
type Entry struct {
	Code uint32
	Char rune
}

// Seq returns the entry's byte sequence.
func (e Entry) Seq() []byte {
	switch {
	case e.Code < 0x100:
		return []byte{byte(e.Code)}
	case e.Code < 0x10000:
		return []byte{byte(e.Code >> 8), byte(e.Code)}
	}
	return []byte{byte(e.Code >> 16), byte(e.Code >> 8), byte(e.Code)}
}

// CodeOf returns the code of a byte sequence of 1 to 3 bytes.
func CodeOf(seq []byte) uint32 {
	var c uint32
	for _, b := range seq {
		c = c<<8 | uint32(b)
	}
	return c
}

func newTable(entries []Entry) *Table {
	t := &Table{asciiSame: true}
	for i := range t.single {
		t.single[i] = -1
	}
	for _, e := range entries {
		switch {
		case e.Code < 0x100:
			t.single[e.Code] = e.Char
		case e.Code < 0x10000:
			if t.double == nil {
				t.double = make([]rune, 0x8000)
				for i := range t.double {
					t.double[i] = -1
				}
			}
			t.double[e.Code-0x8000] = e.Char
		default:
			if t.triple == nil {
				t.triple = map[uint32]rune{}
			}
			t.triple[e.Code] = e.Char
		}
	}
	for b := range 0x80 {
		if t.single[b] != rune(b) {
			t.asciiSame = false
		}
	}
	return t
}

// decodeRune decodes the character at the start of b: a byte the server
// converts on its own, else a two-byte, else a three-byte sequence. n is
// 0 when none converts.
func (t *Table) decodeRune(b []byte) (r rune, n int) {
	if r := t.single[b[0]]; r >= 0 {
		return r, 1
	}
	if len(b) >= 2 && b[0] >= 0x80 && t.double != nil {
		if r := t.double[int(b[0]-0x80)<<8|int(b[1])]; r >= 0 {
			return r, 2
		}
	}
	if len(b) >= 3 && t.triple != nil {
		if r, ok := t.triple[CodeOf(b[:3])]; ok {
			return r, 3
		}
	}
	return 0, 0
}

// encoder returns the character → sequence map, built on first use. Where
// several sequences give one character, the shortest (then lowest) one
// is kept.
func (t *Table) encoder() map[rune][]byte {
	t.encOnce.Do(func() {
		t.enc = map[rune][]byte{}
		add := func(r rune, seq []byte) {
			if _, ok := t.enc[r]; !ok {
				t.enc[r] = seq
			}
		}
		for b, r := range t.single {
			if r >= 0 {
				add(r, []byte{byte(b)})
			}
		}
		for i, r := range t.double {
			if r >= 0 {
				add(r, []byte{byte(i>>8) + 0x80, byte(i)})
			}
		}
		codes := make([]uint32, 0, len(t.triple))
		for c := range t.triple {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			add(t.triple[c], Entry{Code: c}.Seq())
		}
	})
	return t.enc
}

// ReadEntries decodes a table file.
func ReadEntries(raw []byte) ([]Entry, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var out []Entry
	var code uint32
	var char rune
	for len(data) > 0 {
		dc, n := binary.Uvarint(data)
		if n <= 0 {
			return nil, fmt.Errorf("corrupt code at entry %d", len(out))
		}
		data = data[n:]
		dr, m := binary.Varint(data)
		if m <= 0 {
			return nil, fmt.Errorf("corrupt character at entry %d", len(out))
		}
		data = data[m:]
		code += uint32(dc)
		char += rune(dr)
		if code > 0xFFFFFF || (len(out) > 0 && dc == 0) {
			return nil, fmt.Errorf("entry %d: code %X out of order", len(out), code)
		}
		out = append(out, Entry{Code: code, Char: char})
	}
	return out, nil
}

// WriteEntries encodes entries, sorted by code, as a table file.
func WriteEntries(entries []Entry) ([]byte, error) {
	var data []byte
	var code uint32
	var char rune
	for i, e := range entries {
		if i > 0 && e.Code <= code {
			return nil, fmt.Errorf("entry %d: code %X not above %X", i, e.Code, code)
		}
		data = binary.AppendUvarint(data, uint64(e.Code-code))
		data = binary.AppendVarint(data, int64(e.Char-char))
		code, char = e.Code, e.Char
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
