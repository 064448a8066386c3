package sdk

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// The fast path of [DecodeEvent]: a single-pass parser for the event
// shapes capture writes (row events; everything but ddl). It returns
// errUnusual for anything it does not handle exactly like encoding/json
// (a DDL object, unknown or differently cased keys, nulls where a
// string belongs, surrogate escapes, invalid UTF-8, numbers out of
// range, malformed input), and DecodeEvent then decodes with
// encoding/json: the result is always what encoding/json gives, only
// faster (FuzzDecodeEvent checks it).

var errUnusual = errors.New("not decoded by the fast path")

type scanner struct {
	data []byte
	i    int
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return errUnusual
	}
	s.i++
	return nil
}

// literal consumes word (true, false, null) when it comes next.
func (s *scanner) literal(word string) bool {
	if s.peek() != word[0] || len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

func (s *scanner) bool() (bool, error) {
	switch {
	case s.literal("true"):
		return true, nil
	case s.literal("false"):
		return false, nil
	}
	return false, errUnusual
}

// str parses a JSON string.
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", errUnusual
	}
	s.i++
	start := s.i
	plain := true
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			raw := s.data[start:s.i]
			s.i++
			if plain {
				return string(raw), nil
			}
			return unescape(raw)
		case c == '\\':
			plain = false
			s.i += 2
		case c < 0x20:
			return "", errUnusual
		case c >= utf8.RuneSelf:
			plain = false
			s.i++
		default:
			s.i++
		}
	}
	return "", errUnusual
}

// unescape decodes the inside of a JSON string holding escapes or
// non-ASCII bytes.
func unescape(raw []byte) (string, error) {
	if !utf8.Valid(raw) {
		return "", errUnusual // encoding/json replaces invalid bytes
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		if i >= len(raw) {
			return "", errUnusual
		}
		switch raw[i] {
		case '"', '\\', '/':
			b = append(b, raw[i])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if i+5 > len(raw) {
				return "", errUnusual
			}
			n, err := strconv.ParseUint(string(raw[i+1:i+5]), 16, 16)
			if err != nil || n >= 0xD800 && n < 0xE000 {
				return "", errUnusual // surrogates: left to encoding/json
			}
			b = utf8.AppendRune(b, rune(n))
			i += 4
		default:
			return "", errUnusual
		}
	}
	return string(b), nil
}

// number returns the text of a JSON number.
func (s *scanner) number() (string, error) {
	s.ws()
	start := s.i
	d := s.data
	i := s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return "", errUnusual
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return "", errUnusual
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return "", errUnusual
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	s.i = i
	return string(d[start:i]), nil
}

func (s *scanner) int(bits int) (int64, error) {
	t, err := s.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(t, 10, bits)
	if err != nil {
		return 0, errUnusual
	}
	return n, nil
}

func (s *scanner) uint(bits int) (uint64, error) {
	t, err := s.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(t, 10, bits)
	if err != nil {
		return 0, errUnusual
	}
	return n, nil
}

// more moves to the next key of an object or element of an array, after
// the opening bracket (n == 0) or the previous one: false at its end.
func (s *scanner) more(n int, open, close byte) (bool, error) {
	if n == 0 {
		if err := s.expect(open); err != nil {
			return false, err
		}
		if s.peek() == close {
			s.i++
			return false, nil
		}
		return true, nil
	}
	switch s.peek() {
	case ',':
		s.i++
		return true, nil
	case close:
		s.i++
		return false, nil
	}
	return false, errUnusual
}

// fields iterates over the keys of an object; the caller consumes each
// value.
func (s *scanner) fields(yield func(key []byte) error) error {
	for n := 0; ; n++ {
		ok, err := s.more(n, '{', '}')
		if err != nil || !ok {
			return err
		}
		k, err := s.key()
		if err != nil {
			return err
		}
		if err := yield(k); err != nil {
			return err
		}
	}
}

// key parses an object key and its colon. Keys are ASCII without escapes
// in every event capture writes; others go to encoding/json, which also
// matches keys case-insensitively.
func (s *scanner) key() ([]byte, error) {
	if s.peek() != '"' {
		return nil, errUnusual
	}
	start := s.i + 1
	for i := start; i < len(s.data); i++ {
		c := s.data[i]
		if c == '"' {
			k := s.data[start:i]
			s.i = i + 1
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			return k, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, errUnusual
		}
	}
	return nil, errUnusual
}

// row parses a row image: column name → null, string or json.Number. A
// key seen twice keeps its last value, as encoding/json does. Keys
// that are one of names share its string.
func (s *scanner) row(names []string) (map[string]any, error) {
	if s.literal("null") {
		return nil, nil
	}
	m := make(map[string]any, len(names))
	n := 0
	err := s.fields(func(kb []byte) error {
		var k string
		if n < len(names) && names[n] == string(kb) {
			k = names[n]
		} else {
			k = string(kb)
			for _, name := range names {
				if name == k {
					k = name
					break
				}
			}
		}
		n++
		switch c := s.peek(); {
		case c == '"':
			v, err := s.str()
			m[k] = v
			return err
		case c == 'n':
			if !s.literal("null") {
				return errUnusual
			}
			m[k] = nil
			return nil
		case c == '-' || c >= '0' && c <= '9':
			v, err := s.number()
			m[k] = json.Number(v)
			return err
		}
		return errUnusual
	})
	return m, err
}

func (s *scanner) column(c *Column) error {
	return s.fields(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			c.Name, err = s.str()
		case "type":
			c.Type, err = s.str()
		case "charset":
			c.Charset, err = s.str()
		case "nullable":
			c.Nullable, err = s.bool()
		case "generated":
			c.Generated, err = s.bool()
		default:
			return errUnusual
		}
		return err
	})
}

func (s *scanner) position(p *Position) error {
	return s.fields(func(k []byte) error {
		var err error
		var n uint64
		var i int64
		switch string(k) {
		case "file":
			p.File, err = s.str()
		case "offset":
			n, err = s.uint(32)
			p.Offset = uint32(n)
		case "row":
			i, err = s.int(strconv.IntSize)
			p.Row = int(i)
		case "gtid":
			p.GTID, err = s.str()
		case "server_id":
			n, err = s.uint(32)
			p.ServerID = uint32(n)
		case "server_uuid":
			p.ServerUUID, err = s.str()
		default:
			return errUnusual
		}
		return err
	})
}

func (s *scanner) txn(t *Txn) error {
	return s.fields(func(k []byte) error {
		var err error
		var i int64
		switch string(k) {
		case "id":
			t.ID, err = s.str()
		case "seq":
			i, err = s.int(strconv.IntSize)
			t.Seq = int(i)
		case "last":
			t.Last, err = s.bool()
		default:
			return errUnusual
		}
		return err
	})
}

func (s *scanner) time(t *time.Time) error {
	start := s.peek()
	if start != '"' {
		return errUnusual
	}
	from := s.i
	if _, err := s.str(); err != nil {
		return err
	}
	if t.UnmarshalJSON(s.data[from:s.i]) != nil {
		return errUnusual
	}
	return nil
}

// decodeFast decodes the event in data, or returns errUnusual.
func decodeFast(data []byte) (*Event, error) {
	s := &scanner{data: data}
	ev := new(Event)
	var seen uint32
	var names []string // the column names, in order
	err := s.fields(func(k []byte) error {
		bit := eventKeyBit(k)
		if bit == 0 || seen&bit != 0 {
			// ddl, keys this path does not know, and repeated keys
			// (encoding/json merges them into the first)
			return errUnusual
		}
		seen |= bit
		var err error
		var i int64
		switch string(k) {
		case "v":
			i, err = s.int(strconv.IntSize)
			ev.Version = int(i)
		case "source":
			ev.Source, err = s.str()
		case "op":
			var op string
			op, err = s.str()
			ev.Op = Op(op)
		case "db":
			ev.Database, err = s.str()
		case "table":
			ev.Table, err = s.str()
		case "columns":
			ev.Columns = make([]Column, 0, 16)
			for n := 0; err == nil; n++ {
				var ok bool
				if ok, err = s.more(n, '[', ']'); ok {
					ev.Columns = append(ev.Columns, Column{})
					err = s.column(&ev.Columns[len(ev.Columns)-1])
					names = append(names, ev.Columns[len(ev.Columns)-1].Name)
				} else if err == nil {
					break
				}
			}
		case "pk":
			ev.PrimaryKey = []string{}
			for n := 0; err == nil; n++ {
				var ok bool
				if ok, err = s.more(n, '[', ']'); ok {
					var k string
					k, err = s.str()
					ev.PrimaryKey = append(ev.PrimaryKey, k)
				} else if err == nil {
					break
				}
			}
		case "key":
			ev.Key, err = s.row(ev.PrimaryKey)
		case "before":
			ev.Before, err = s.row(names)
		case "after":
			ev.After, err = s.row(names)
		case "sql":
			ev.SQL, err = s.str()
		case "pos":
			err = s.position(&ev.Position)
		case "ts":
			err = s.time(&ev.Timestamp)
		case "txn":
			err = s.txn(&ev.Txn)
		case "snapshot":
			ev.Snapshot, err = s.bool()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// eventKeyBit numbers the keys decodeFast knows; 0 for others.
func eventKeyBit(k []byte) uint32 {
	for i, known := range fastKeys {
		if string(k) == known {
			return 1 << i
		}
	}
	return 0
}

var fastKeys = [...]string{"v", "source", "op", "db", "table", "columns", "pk", "key", "before", "after", "sql", "pos", "ts", "txn", "snapshot"}
