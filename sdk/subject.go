package sdk

import (
	"fmt"
	"strconv"
	"strings"
)

// SubjectPrefix is the first token of every databus subject.
const SubjectPrefix = "databus"

// Subject returns the subject an event of op on db.table is published to:
// "databus.<source>.<db>.<table>.<op>", each name encoded with [EncodeToken].
// DDL that names no database or no table uses "_" for that token.
func Subject(source, db, table string, op Op) string {
	return SubjectPrefix + "." + source + "." + nameToken(db) + "." + nameToken(table) + "." + string(op)
}

func nameToken(name string) string {
	if name == "" {
		return "_"
	}
	return EncodeToken(name)
}

// StreamSubjects returns the wildcard that covers every subject of source.
func StreamSubjects(source string) string {
	return SubjectPrefix + "." + source + ".>"
}

// EventSubjects returns the wildcard that covers the events of source and
// nothing else: "databus.<source>.*.*.*". The stream also holds capture's
// control messages ([LeaderSubject]), which have fewer tokens.
func EventSubjects(source string) string {
	return SubjectPrefix + "." + source + ".*.*.*"
}

// LeaderSubject returns the subject of the message a capture node
// publishes when it takes over capture of source:
// "databus.<source>._capture.leader". It carries no event (see
// docs/events.md); its place in the stream fences off the node that
// captured before.
func LeaderSubject(source string) string {
	return SubjectPrefix + "." + source + "._capture.leader"
}

// StreamName returns the JetStream stream name of source: "DATABUS_<source>".
func StreamName(source string) string {
	return "DATABUS_" + source
}

// FilterSubject returns the subject filter for a database ("" for all), a
// table ("" for all tables) and an operation ("" for all).
func FilterSubject(source, db, table string, op Op) string {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return EncodeToken(s)
	}
	o := string(op)
	if o == "" {
		o = "*"
	}
	return SubjectPrefix + "." + source + "." + tok(db) + "." + tok(table) + "." + o
}

// EncodeToken turns a MySQL database or table name into one subject token.
// Bytes in [A-Za-z0-9_-] pass unchanged; every other byte, including '%',
// becomes '%' followed by two upper-case hex digits. "my.db" becomes
// "my%2Edb". The name "_" is encoded as "%5F" because "_" alone stands for
// "no table" in DDL subjects. The encoding is reversible with [DecodeToken].
func EncodeToken(name string) string {
	clean := true
	for i := 0; i < len(name); i++ {
		if !tokenSafe(name[i]) {
			clean = false
			break
		}
	}
	if clean && name != "" && name != "_" {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 8)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if tokenSafe(c) && name != "_" {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

// DecodeToken reverses [EncodeToken].
func DecodeToken(tok string) (string, error) {
	if !strings.Contains(tok, "%") {
		return tok, nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("subject token %q: truncated escape at byte %d", tok, i)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("subject token %q: bad escape at byte %d", tok, i)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// ChunkHeader marks a message that carries part of an event too large for
// one NATS message: "i/n", chunk i (from 1) of n. The chunks of an event are
// consecutive in the stream; concatenating their bodies gives the event.
const ChunkHeader = "Databus-Chunk"

// ParseChunk parses a [ChunkHeader] value.
func ParseChunk(v string) (i, n int, err error) {
	a, b, ok := strings.Cut(v, "/")
	if ok {
		i, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || i < 1 || i > n {
		return 0, 0, fmt.Errorf("bad %s header %q: want i/n", ChunkHeader, v)
	}
	return i, n, nil
}
