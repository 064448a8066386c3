// Package charset converts text stored in a MariaDB or MySQL character set
// to UTF-8 exactly as the server's own CONVERT(… USING utf8mb4) does, and
// back for the few strings capture must compare in the column's set (ENUM
// and SET values).
//
// The server, not a text library, is the reference: the mapping of every
// single-byte set and of every byte sequence of the multi-byte sets (big5,
// cp932, eucjpms, euckr, gb2312, gbk, sjis, ujis) was read off MariaDB and
// is embedded here (tables/*.bin, written by `make charsets`). The
// golang.org/x/text decoders disagree with the server in places (latin1's
// five undefined Windows-1252 bytes, latin2 0x80–0x9F, sjis 0x815F, parts
// of greek, big5 and ujis). The Unicode encodings (ucs2, utf16, utf16le,
// utf32) and the UTF-8 ones are decoded by rule, the rule the server
// follows. A byte sequence the server cannot convert — it gives '?' or
// text that is not UTF-8 — is an error, never a replacement character.
package charset

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Binary is the character set of byte strings.
const Binary = "binary"

// maxLen is the longest character, in bytes, of each character set
// MariaDB 10.11 offers (information_schema.CHARACTER_SETS.MAXLEN); utf8 is
// the old name of utf8mb3.
var maxLen = map[string]int{
	"armscii8": 1, "ascii": 1, "binary": 1, "cp1250": 1, "cp1251": 1, "cp1256": 1, "cp1257": 1, "cp850": 1,
	"cp852": 1, "cp866": 1, "dec8": 1, "geostd8": 1, "greek": 1, "hebrew": 1, "hp8": 1, "keybcs2": 1,
	"koi8r": 1, "koi8u": 1, "latin1": 1, "latin2": 1, "latin5": 1, "latin7": 1, "macce": 1, "macroman": 1,
	"swe7": 1, "tis620": 1,
	"big5": 2, "cp932": 2, "euckr": 2, "gb2312": 2, "gbk": 2, "sjis": 2, "ucs2": 2,
	"eucjpms": 3, "ujis": 3, "utf8mb3": 3, "utf8": 3,
	"utf16": 4, "utf16le": 4, "utf32": 4, "utf8mb4": 4,
}

// MaxLen returns the longest character of charset in bytes, and whether
// databus knows charset.
func MaxLen(charset string) (int, bool) {
	n, ok := maxLen[charset]
	return n, ok
}

// supported lists the character sets databus converts, for errors.
func supported() string {
	names := make([]string, 0, len(maxLen))
	for name := range maxLen {
		if name != Binary && name != "utf8" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// ASCIIBased reports whether the space is the byte 0x20 in charset and no
// other character ends with that byte, so that CHAR padding is trailing
// 0x20 bytes.
func ASCIIBased(charset string) bool {
	switch charset {
	case "ucs2", "utf16", "utf16le", "utf32":
		return false
	}
	return true
}

// IsUTF8 reports whether text in charset is stored as UTF-8. "" (no
// character set given, as for the values of an ENUM whose table map left
// it out) is UTF-8, the server's metadata character set.
func IsUTF8(charset string) bool {
	switch charset {
	case "utf8mb4", "utf8mb3", "utf8", "":
		return true
	}
	return false
}

// KeepsASCII reports whether charset stores ASCII text as ASCII's own
// bytes, so that such text is its own conversion to UTF-8 ([Decode] would
// return it unchanged). UTF-8 does; swe7, whose [ is Ä, and the UTF-16
// and UTF-32 sets do not.
func KeepsASCII(charset string) bool {
	if IsUTF8(charset) {
		return true
	}
	if !ASCIIBased(charset) {
		return false
	}
	t, err := table(charset)
	return err == nil && t.asciiSame
}

// Decode converts b, text stored in charset, to UTF-8 as the server's
// CONVERT(… USING utf8mb4) does. It fails on a character set it does not
// know and on a byte sequence the server cannot convert, naming the
// offset.
func Decode(charset string, b []byte) (string, error) {
	switch charset {
	case "utf8mb4", "utf8mb3", "utf8", "":
		if !utf8.Valid(b) {
			return "", fmt.Errorf("text is not valid %s at byte %d", charset, invalidUTF8At(b))
		}
		return string(b), nil
	case "ucs2":
		return decodeUnits(charset, b, 2, func(p []byte) rune { return rune(binary.BigEndian.Uint16(p)) })
	case "utf32":
		return decodeUnits(charset, b, 4, func(p []byte) rune { return rune(binary.BigEndian.Uint32(p)) })
	case "utf16":
		return decodeUTF16(charset, b, binary.BigEndian)
	case "utf16le":
		return decodeUTF16(charset, b, binary.LittleEndian)
	}
	t, err := table(charset)
	if err != nil {
		return "", err
	}
	if isASCII(b) && t.asciiSame {
		return string(b), nil
	}
	var out strings.Builder
	out.Grow(len(b) + len(b)/2)
	for i := 0; i < len(b); {
		r, n := t.decodeRune(b[i:])
		if n == 0 {
			return "", fmt.Errorf("bytes % X at byte %d are not a %s character the server converts to UTF-8", b[i:min(i+3, len(b))], i, charset)
		}
		out.WriteRune(r)
		i += n
	}
	return out.String(), nil
}

// Encode converts s, UTF-8 text, to charset: the inverse of [Decode].
func Encode(charset, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("text is not valid UTF-8")
	}
	switch charset {
	case "utf8mb4", "utf8mb3", "utf8", "":
		return []byte(s), nil
	case "ucs2", "utf16", "utf16le", "utf32":
		var out []byte
		for _, r := range s {
			var ok bool
			if out, ok = appendUnit(charset, out, r); !ok {
				return nil, fmt.Errorf("character %U has no %s form", r, charset)
			}
		}
		return out, nil
	}
	t, err := table(charset)
	if err != nil {
		return nil, err
	}
	enc := t.encoder()
	out := make([]byte, 0, len(s))
	for _, r := range s {
		seq, ok := enc[r]
		if !ok {
			return nil, fmt.Errorf("character %U has no %s form", r, charset)
		}
		out = append(out, seq...)
	}
	return out, nil
}

// decodeUnits decodes a fixed-width encoding of code points.
func decodeUnits(charset string, b []byte, width int, unit func([]byte) rune) (string, error) {
	if len(b)%width != 0 {
		return "", fmt.Errorf("%s text of %d bytes is not whole %d-byte characters", charset, len(b), width)
	}
	var out strings.Builder
	out.Grow(len(b))
	for i := 0; i < len(b); i += width {
		r := unit(b[i:])
		if !utf8.ValidRune(r) {
			return "", fmt.Errorf("%s character %X at byte %d has no UTF-8 form", charset, b[i:i+width], i)
		}
		out.WriteRune(r)
	}
	return out.String(), nil
}

// decodeUTF16 decodes UTF-16 in the given byte order: a surrogate pair is
// one character, a lone surrogate is an error.
func decodeUTF16(charset string, b []byte, order binary.ByteOrder) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("%s text of %d bytes is not whole 16-bit units", charset, len(b))
	}
	var out strings.Builder
	out.Grow(len(b))
	for i := 0; i < len(b); i += 2 {
		u := rune(order.Uint16(b[i:]))
		switch {
		case u >= 0xD800 && u < 0xDC00 && i+4 <= len(b):
			lo := rune(order.Uint16(b[i+2:]))
			if lo < 0xDC00 || lo > 0xDFFF {
				return "", fmt.Errorf("%s high surrogate at byte %d without its low one", charset, i)
			}
			out.WriteRune(0x10000 + (u-0xD800)<<10 + (lo - 0xDC00))
			i += 2
		case u >= 0xD800 && u <= 0xDFFF:
			return "", fmt.Errorf("%s lone surrogate %04X at byte %d", charset, u, i)
		default:
			out.WriteRune(u)
		}
	}
	return out.String(), nil
}

// appendUnit appends r in one of the Unicode encodings; false when it has
// no form there.
func appendUnit(charset string, out []byte, r rune) ([]byte, bool) {
	switch charset {
	case "ucs2":
		if r > 0xFFFF {
			return out, false
		}
		return binary.BigEndian.AppendUint16(out, uint16(r)), true
	case "utf32":
		return binary.BigEndian.AppendUint32(out, uint32(r)), true
	}
	var order binary.AppendByteOrder = binary.BigEndian
	if charset == "utf16le" {
		order = binary.LittleEndian
	}
	if r > 0xFFFF {
		r -= 0x10000
		out = order.AppendUint16(out, uint16(0xD800+r>>10))
		return order.AppendUint16(out, uint16(0xDC00+r&0x3FF)), true
	}
	return order.AppendUint16(out, uint16(r)), true
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
