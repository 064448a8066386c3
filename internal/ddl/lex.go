package ddl

import "strings"

// tokKind is the kind of a lexical token of a statement.
type tokKind int

const (
	// tokWord is an unquoted word: a keyword, a name or a number.
	tokWord tokKind = iota
	// tokQuoted is a name in backticks.
	tokQuoted
	// tokString is a string literal in single or double quotes.
	tokString
	// tokPunct is any other single character: ( ) , . = ; …
	tokPunct
)

// token is one token of a statement: its kind and where it is in the
// text.
type token struct {
	kind       tokKind
	start, end int
}

// Mode is what of the session's sql_mode changes how a statement reads.
type Mode struct {
	// ANSIQuotes: "x" is a name, not a string (ANSI_QUOTES, part of
	// sql_mode ANSI and ORACLE).
	ANSIQuotes bool
	// NoBackslashEscapes: a backslash in a string is itself
	// (NO_BACKSLASH_ESCAPES).
	NoBackslashEscapes bool
}

// sql_mode bits, as the binlog carries them.
const (
	modeANSIQuotes         = 1 << 2
	modeNoBackslashEscapes = 1 << 20
)

// ModeOf returns the Mode of a sql_mode given as its bits (the binlog's
// Q_SQL_MODE_CODE).
func ModeOf(sqlMode uint64) Mode {
	return Mode{ANSIQuotes: sqlMode&modeANSIQuotes != 0, NoBackslashEscapes: sqlMode&modeNoBackslashEscapes != 0}
}

// lex splits a MySQL or MariaDB statement, read under mode, into tokens.
// Comments and whitespace are not tokens; the text of an executable
// comment (/*! … */, /*M! … */) is, as the server runs it. It never fails:
// an unterminated quote or comment runs to the end of the text.
func lex(s string, mode Mode) []token {
	var toks []token
	inExec := false // inside /*! … */
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#':
			i = lineEnd(s, i)
		case c == '-' && strings.HasPrefix(s[i:], "--") && (i+2 == len(s) || s[i+2] <= ' '):
			i = lineEnd(s, i)
		case c == '/' && strings.HasPrefix(s[i:], "/*!"), c == '/' && strings.HasPrefix(s[i:], "/*M!"):
			// An executable comment: its version number is not code.
			i += strings.IndexByte(s[i:], '!') + 1
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			inExec = true
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			if end := strings.Index(s[i+2:], "*/"); end >= 0 {
				i += 2 + end + 2
			} else {
				i = len(s)
			}
		case c == '*' && inExec && strings.HasPrefix(s[i:], "*/"):
			inExec = false
			i += 2
		case c == '`' || c == '"' && mode.ANSIQuotes:
			end := quoteEnd(s, i, c, false)
			toks = append(toks, token{tokQuoted, i, end})
			i = end
		case c == '\'' || c == '"':
			end := quoteEnd(s, i, c, !mode.NoBackslashEscapes)
			toks = append(toks, token{tokString, i, end})
			i = end
		case isWordByte(c):
			j := i + 1
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{tokWord, i, j})
			i = j
		default:
			toks = append(toks, token{tokPunct, i, i + 1})
			i++
		}
	}
	return toks
}

// isWordByte reports whether c may be part of an unquoted word. Bytes of
// multi-byte UTF-8 characters are.
func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= 0x80
}

func lineEnd(s string, i int) int {
	if end := strings.IndexByte(s[i:], '\n'); end >= 0 {
		return i + end + 1
	}
	return len(s)
}

// quoteEnd returns the offset after the quote that closes the one at
// s[i]: a doubled quote is part of the text, and so, in strings, is the
// character after a backslash.
func quoteEnd(s string, i int, q byte, backslash bool) int {
	for j := i + 1; j < len(s); j++ {
		switch {
		case backslash && s[j] == '\\':
			j++
		case s[j] == q && j+1 < len(s) && s[j+1] == q:
			j++
		case s[j] == q:
			return j + 1
		}
	}
	return len(s)
}

// unquote returns the name a word or quoted-name token stands for.
func unquote(s string, t token) string {
	text := s[t.start:t.end]
	if t.kind != tokQuoted {
		return text
	}
	q := text[:1] // ` or "
	text = text[1:]
	text = strings.TrimSuffix(text, q)
	return strings.ReplaceAll(text, q+q, q)
}
