package capture_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// charsetCodes are the byte sequences written for a character set of
// maxLen bytes per character: seq tables of codes (the sequence's bytes as
// a big-endian number) and their byte width. Every byte and every
// two-byte sequence of the table-driven sets, every three-byte EUC-JP
// sequence (0x8F …), every ucs2 character; samples of the larger Unicode
// encodings.
func charsetCodes(name string, maxLen int) [][2]any {
	switch name {
	case "ucs2":
		return [][2]any{{"seq_0_to_65535", 2}}
	case "utf16", "utf16le":
		// every fifth 16-bit unit, and surrogate pairs D800 DC00 … DBFF
		// DFFF (big-endian: see charsetText)
		return [][2]any{{"seq_0_to_65535_step_5", 2}, {"seq_3623934976_to_3690987519_step_65587", 4}}
	case "utf32":
		return [][2]any{{"seq_0_to_1114111_step_61", 4}}
	case "utf8mb3":
		return [][2]any{{"seq_0_to_127", 1}, {"seq_49792_to_57279", 2}, {"seq_14721152_to_15712191_step_13", 3}}
	case "utf8mb4":
		return [][2]any{{"seq_0_to_127", 1}, {"seq_49792_to_57279", 2}, {"seq_14721152_to_15712191_step_13", 3},
			{"seq_4036988544_to_4103061439_step_4099", 4}}
	}
	codes := [][2]any{{"seq_0_to_255", 1}}
	if maxLen >= 2 {
		codes = append(codes, [2]any{"seq_32768_to_65535", 2})
	}
	if maxLen >= 3 {
		codes = append(codes, [2]any{"seq_9371648_to_9437183", 3})
	}
	return codes
}

// TestEveryCharacterSetConvertsAsTheServerDoes writes, for every
// character set the server offers, every character it converts to UTF-8
// (the Unicode ones sampled) into a column of that set, one row each, and
// one row with all of them in a single value, then checks that the binlog
// events and a snapshot carry each value as the server's own
// CONVERT(… USING utf8mb4) gives it.
func TestEveryCharacterSetConvertsAsTheServerDoes(t *testing.T) {
	r := testenv.NewRig(t)
	db := r.DB.DB(t)
	sets := map[string]int{}
	rows, err := db.Query("SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS WHERE CHARACTER_SET_NAME <> 'binary'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		sets[name] = n
	}
	if rows.Err() != nil || len(sets) < 39 {
		t.Fatalf("%d character sets (%v); MariaDB 10.11 has 39 besides binary", len(sets), rows.Err())
	}
	r.DB.Exec(t, "CREATE DATABASE cs")
	r.Start(t)

	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%.300s: %v", q, err)
		}
	}
	// Not strict: CONVERT of what a set cannot convert must give '?', not fail.
	exec("SET SESSION sql_mode = '', group_concat_max_len = 16777216")
	total := 0
	for name, maxLen := range sets {
		exec(fmt.Sprintf("CREATE TABLE cs.%s (id BIGINT PRIMARY KEY, v MEDIUMTEXT CHARACTER SET %s, c CHAR(1) CHARACTER SET %s)", name, name, name))
		for _, codes := range charsetCodes(name, maxLen) {
			// x is the sequence as text of the set, y the server's
			// conversion. Written: what converts to one character
			// other than the '?' of a failed conversion, and not to a
			// surrogate (ucs2 D800, which the server renders as the
			// invalid UTF-8 ED A0 80).
			exec(fmt.Sprintf(`INSERT INTO cs.%[1]s (id, v, c)
SELECT seq, x, x FROM (
  SELECT seq, x, CONVERT(x USING utf8mb4) y FROM (
    SELECT seq, %[4]s x FROM seq.%[3]s) a) b
WHERE CHAR_LENGTH(y) = 1 AND (HEX(y) <> '3F' OR x = CONVERT('?' USING %[1]s)) AND HEX(y) NOT LIKE 'EDA%%' AND HEX(y) NOT LIKE 'EDB%%'`,
				name, 2*codes[1].(int), codes[0], charsetText(name, 2*codes[1].(int))))
		}
		// All the characters in one value: the decoder must find where
		// each one ends.
		exec(fmt.Sprintf("INSERT INTO cs.%[1]s (id, v) SELECT -1, GROUP_CONCAT(v ORDER BY id SEPARATOR '') FROM cs.%[1]s", name))
		var n int
		if err := conn.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM cs."+name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 100 {
			t.Fatalf("%s: only %d characters written", name, n)
		}
		total += n
	}
	want := map[string][2]string{} // table/id → hex of v and c in UTF-8
	for name := range sets {
		rows, err := conn.QueryContext(t.Context(), "SELECT id, HEX(CONVERT(v USING utf8mb4)), IFNULL(HEX(CONVERT(c USING utf8mb4)), 'NULL') FROM cs."+name)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			var v, c string
			if err := rows.Scan(&id, &v, &c); err != nil {
				t.Fatal(err)
			}
			want[fmt.Sprintf("%s/%d", name, id)] = [2]string{strings.ToLower(v), strings.ToLower(c)}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d character sets, %d values", len(sets), total)

	check := func(from string, cfg sdk.Config, snap bool) {
		got := readCharsetRows(t, r.Consumer(t, cfg), total, snap)
		bad := map[string]int{}
		for key, w := range want {
			g, ok := got[key]
			table, _, _ := strings.Cut(key, "/")
			switch {
			case !ok:
				bad[table]++
				if bad[table] <= 3 {
					t.Errorf("%s: row %s missing", from, key)
				}
			case g != w:
				bad[table]++
				if bad[table] <= 3 {
					t.Errorf("%s: row %s: v, c %.80s, %s in UTF-8; the server converts them to %.80s, %s", from, key, g[0], g[1], w[0], w[1])
				}
			}
		}
		for table, n := range bad {
			t.Errorf("%s: %s: %d values differ from the server's conversion", from, table, n)
		}
	}
	check("binlog", sdk.Config{Name: "binlog", Start: sdk.StartBeginning, Databases: []string{"cs"}}, false)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if _, err := r.Snapshot(ctx, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	check("snapshot", sdk.Config{Name: "snap", Start: sdk.StartSnapshot, Databases: []string{"cs"}}, true)
}

// charsetText is the SQL expression for the text of character set name
// whose bytes are the code seq, hexDigits long. utf16le takes the utf16
// code, converted: its byte order would scatter the surrogate pairs.
func charsetText(name string, hexDigits int) string {
	bytes := fmt.Sprintf("UNHEX(LPAD(HEX(seq), %d, '0'))", hexDigits)
	if name == "utf16le" {
		return "CONVERT(CAST(" + bytes + " AS CHAR CHARACTER SET utf16) USING utf16le)"
	}
	return "CAST(" + bytes + " AS CHAR CHARACTER SET " + name + ")"
}

// readCharsetRows reads n inserts of the cs tables (from a snapshot when
// snap), and returns table/id → hex of the UTF-8 of v and c.
func readCharsetRows(t *testing.T, c *sdk.Consumer, n int, snap bool) map[string][2]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	got := map[string][2]string{}
	text := func(v any) string {
		switch s := v.(type) {
		case nil:
			return "null"
		case string:
			return hex.EncodeToString([]byte(s))
		}
		return fmt.Sprintf("%T", v)
	}
	for len(got) < n {
		m, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d rows: %v", len(got), n, err)
		}
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		e := m.Event
		if e.Op != sdk.OpInsert || e.Snapshot != snap {
			continue
		}
		got[fmt.Sprintf("%s/%v", e.Table, e.After["id"])] = [2]string{text(e.After["v"]), text(e.After["c"])}
	}
	return got
}

// MariaDB's JSON is a LONGTEXT kept to JSON by CHECK (json_valid(col)):
// capture and snapshots mark such columns "type": "json" with their
// storage type beside, and only them.
func TestMariaDBJSONColumnsAreMarked(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE js", "CREATE TABLE js.t (id INT PRIMARY KEY, j JSON, k LONGTEXT, l TEXT, plain LONGTEXT, `we``ird` JSON, "+
		"CHECK (json_valid(k)), CONSTRAINT both_checks CHECK (json_valid(l) AND id > 0))")
	r.Start(t)
	r.DB.Exec(t, `INSERT INTO js.t VALUES (1, '{"a": [1, 2.50]}', '[]', '{}', 'not json', 'null')`)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := r.Snapshot(ctx, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{"j": {"json", "longtext"}, "k": {"json", "longtext"}, "l": {"text", ""}, "plain": {"longtext", ""}, "we`ird": {"json", "longtext"}}
	for _, from := range []struct {
		name string
		cfg  sdk.Config
		n    int
	}{
		{"binlog", sdk.Config{Name: "b", Start: sdk.StartBeginning, Tables: []string{"js.t"}}, 1},
		{"snapshot", sdk.Config{Name: "s", Start: sdk.StartSnapshot, Tables: []string{"js.t"}}, 2}, // the schema, the row
	} {
		var row *sdk.Event
		for _, e := range testenv.Read(t, r.Consumer(t, from.cfg), from.n) {
			if e.Op == sdk.OpInsert {
				row = e
			}
		}
		if row == nil {
			t.Fatalf("%s: no insert among the first %d events", from.name, from.n)
		}
		for _, c := range row.Columns {
			if w, ok := want[c.Name]; ok && (c.Type != w[0] || c.Storage != w[1]) {
				t.Errorf("%s: column %s: type %q storage %q, want %q %q", from.name, c.Name, c.Type, c.Storage, w[0], w[1])
			}
		}
		// The value is the stored text, as for any text column.
		if got := row.After["j"]; got != `{"a": [1, 2.50]}` {
			t.Errorf("%s: j = %#v", from.name, got)
		}
	}
}
