package sdk

import (
	"errors"
	"strconv"
	"time"
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
		v, err := s.value()
		m[k] = v
		return err
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
	next := 0          // where in fastKeys to look for the next key
	var names []string // the column names, in order
	err := s.fields(func(k []byte) error {
		at := fastKey(k, next)
		if at < 0 || seen&(1<<at) != 0 {
			// ddl, keys this path does not know, and repeated keys
			// (encoding/json merges them into the first)
			return errUnusual
		}
		seen |= 1 << at
		next = at + 1
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

// fastKey returns the index of k in fastKeys, or -1. It looks at from
// first: capture writes the keys in fastKeys order.
func fastKey(k []byte, from int) int {
	for j := range len(fastKeys) {
		if i := (from + j) % len(fastKeys); string(k) == fastKeys[i] {
			return i
		}
	}
	return -1
}

// fastKeys are the keys decodeFast knows, in the order capture writes them.
var fastKeys = [...]string{"v", "source", "op", "db", "table", "columns", "pk", "key", "before", "after", "sql", "pos", "ts", "txn", "snapshot"}
