package charset_test

import (
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/databus/databus/internal/charset"
	"github.com/databus/databus/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite tables/*.bin from the server's conversions (make charsets)")

// A sample is a set of byte sequences of one character set, as the
// sequence engine query that produces them: code of each, and the server's
// CONVERT(… USING utf8mb4) of its bytes.
type sample struct {
	// codes is a seq_<from>_to_<to>[_step_<n>] table name.
	codes string
	// width is the byte length of each sequence (the code, big-endian).
	width int
}

// samples returns the sequences checked for charset, a set of maxlen
// bytes per character: every byte, every two-byte sequence that starts
// above 0x7F, every three-byte one that starts with 0x8F (EUC-JP's JIS X
// 0212 plane, the only three-byte characters of ujis and eucjpms) and a
// sample of the others; for the Unicode sets every 16-bit unit and a
// sample of the 32-bit ones.
func samples(name string, maxLen int) []sample {
	switch name {
	case "ucs2", "utf16", "utf16le":
		s := []sample{{"seq_0_to_65535", 2}}
		if name != "ucs2" {
			s = append(s, sample{"seq_3623878656_to_3690987519_step_4099", 4}) // D800 0000 … DBFF FFFF: pairs and bad pairs
		}
		return s
	case "utf32":
		return []sample{{"seq_0_to_1114111_step_7", 4}, {"seq_1114080_to_1114200", 4}, {"seq_55290_to_57400", 4}}
	}
	s := []sample{{"seq_0_to_255", 1}}
	if maxLen >= 2 {
		s = append(s, sample{"seq_32768_to_65535", 2})
	}
	if maxLen >= 3 {
		s = append(s, sample{"seq_9371648_to_9437183", 3}, sample{"seq_8388608_to_16777215_step_4093", 3})
	}
	return s
}

// TestDecodeAgreesWithTheServer checks Decode against the server's own
// conversion for every character set the server offers: for each
// sequence of [samples], where the server's CONVERT gives clean UTF-8 (no
// '?' that was not a '?' byte), Decode gives the same text; where it does
// not, Decode fails. With -update it first rewrites the embedded tables
// from the same answers (make charsets).
func TestDecodeAgreesWithTheServer(t *testing.T) {
	db := testenv.StartMariaDB(t).DB(t)
	rows, err := db.Query("SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	type set struct {
		name   string
		maxLen int
	}
	var sets []set
	for rows.Next() {
		var s set
		if err := rows.Scan(&s.name, &s.maxLen); err != nil {
			t.Fatal(err)
		}
		sets = append(sets, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(sets) < 40 {
		t.Fatalf("the server offers %d character sets; MariaDB 10.11 has 40", len(sets))
	}
	for _, s := range sets {
		if s.name == charset.Binary {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			if n, ok := charset.MaxLen(s.name); !ok || n != s.maxLen {
				t.Fatalf("MaxLen = %d, %v; the server says %d", n, ok, s.maxLen)
			}
			var conv []converted
			for _, smp := range samples(s.name, s.maxLen) {
				conv = append(conv, convert(t, db, s.name, smp)...)
			}
			if *update && !charset.IsUTF8(s.name) && charset.ASCIIBased(s.name) {
				writeTable(t, s.name, conv)
			}
			checked, bad := 0, 0
			for _, c := range conv {
				got, err := charset.Decode(s.name, c.seq)
				switch {
				case c.clean && err != nil:
					bad++
					if bad <= 10 {
						t.Errorf("% X: server gives %q, Decode fails: %v", c.seq, c.utf8, err)
					}
				case c.clean && got != c.utf8:
					bad++
					if bad <= 10 {
						t.Errorf("% X: server gives %q (% X), Decode %q (% X)", c.seq, c.utf8, c.utf8, got, got)
					}
				case !c.clean && err == nil:
					bad++
					if bad <= 10 {
						t.Errorf("% X: server cannot convert it (gives % X), Decode gives %q", c.seq, c.utf8, got)
					}
				}
				checked++
			}
			if bad > 0 {
				t.Errorf("%d of %d sequences differ from the server", bad, checked)
			}
			t.Logf("%d sequences agree with the server", checked)
		})
	}
}

// converted is one byte sequence and the server's conversion of it.
type converted struct {
	seq   []byte
	utf8  string
	clean bool
}

func convert(t *testing.T, db *sql.DB, name string, s sample) []converted {
	t.Helper()
	q := fmt.Sprintf("SELECT LPAD(HEX(seq), %d, '0'), HEX(CONVERT(CAST(UNHEX(LPAD(HEX(seq), %d, '0')) AS CHAR CHARACTER SET %s) USING utf8mb4)) FROM seq.%s",
		2*s.width, 2*s.width, name, s.codes)
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []converted
	for rows.Next() {
		var seqHex, outHex string
		if err := rows.Scan(&seqHex, &outHex); err != nil {
			t.Fatal(err)
		}
		seq, err1 := hex.DecodeString(seqHex)
		text, err2 := hex.DecodeString(outHex)
		if err1 != nil || err2 != nil {
			t.Fatalf("hex %q %q", seqHex, outHex)
		}
		c := converted{seq: seq, utf8: string(text)}
		// The server writes '?' for what it cannot convert.
		c.clean = utf8.Valid(text) && strings.Count(c.utf8, "?") == questionMarks(t, name, seq)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// writeTable writes the embedded table of name: every sequence the server
// converts to exactly one character, with that character.
func writeTable(t *testing.T, name string, conv []converted) {
	t.Helper()
	var entries []charset.Entry
	for _, c := range conv {
		if !c.clean || utf8.RuneCountInString(c.utf8) != 1 {
			continue
		}
		r, _ := utf8.DecodeRuneInString(c.utf8)
		entries = append(entries, charset.Entry{Code: charset.CodeOf(c.seq), Char: r})
	}
	slices.SortFunc(entries, func(a, b charset.Entry) int { return int(a.Code) - int(b.Code) })
	entries = slices.CompactFunc(entries, func(a, b charset.Entry) bool { return a.Code == b.Code })
	data, err := charset.WriteEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("tables", name+".bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote tables/%s.bin: %d characters, %d bytes", name, len(entries), len(data))
}

// questionMarks counts the '?' characters in seq, text in charset name.
func questionMarks(t *testing.T, name string, seq []byte) int {
	q, err := charset.Encode(name, "?")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; i+len(q) <= len(seq); i += len(q) {
		if string(seq[i:i+len(q)]) == string(q) {
			n++
		}
	}
	return n
}
