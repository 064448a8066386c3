package sdk

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// scanner reads the JSON tokens decodeFast needs, refusing (errUnusual)
// whatever encoding/json would read differently.
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

// value parses a column value: null, a string or a number (as
// json.Number).
func (s *scanner) value() (any, error) {
	switch c := s.peek(); {
	case c == '"':
		v, err := s.str()
		return v, err
	case c == 'n' && s.literal("null"):
		return nil, nil
	case c == '-' || c >= '0' && c <= '9':
		v, err := s.number()
		return json.Number(v), err
	}
	return nil, errUnusual
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
