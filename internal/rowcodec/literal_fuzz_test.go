package rowcodec_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// sessions are connections to a real server under settings that break
// naive literals: default, NO_BACKSLASH_ESCAPES, and a latin1 connection.
func sessions(t testing.TB) []*sql.Conn {
	t.Helper()
	db := testenv.StartMariaDB(t).DB(t)
	var out []*sql.Conn
	for _, setup := range []string{
		"SET SESSION sql_mode = DEFAULT",
		"SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES'",
		"SET NAMES latin1",
	} {
		c, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(context.Background(), setup); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// FuzzLiterals sends random text and bytes through the SQL literal
// encoders into a real server and checks that it reads back exactly the
// same bytes. The corpus is kept in testdata/fuzz/FuzzLiterals.
func FuzzLiterals(f *testing.F) {
	for _, s := range []string{"", "plain", "it's", `back\slash`, "nul\x00byte", "\n\r\t\x1a", "émoji 😀", "\\'", "'\\", "\xff\xfe", "%_", "--", "/*", "`", `"`} {
		f.Add(s, []byte(s))
	}
	conns := sessions(f)
	f.Fuzz(func(t *testing.T, s string, b []byte) {
		for _, c := range conns {
			if utf8.ValidString(s) {
				var got string
				q := "SELECT HEX(CONVERT(" + sdk.QuoteString(s) + " USING utf8mb4))"
				if err := c.QueryRowContext(t.Context(), q).Scan(&got); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				if want := strings.ToUpper(hex.EncodeToString([]byte(s))); got != want {
					t.Fatalf("text %q: server read %s, want %s (literal %s)", s, got, want, sdk.QuoteString(s))
				}
			}
			var got string
			q := "SELECT HEX(" + sdk.QuoteBytes(b) + ")"
			if err := c.QueryRowContext(t.Context(), q).Scan(&got); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if want := strings.ToUpper(hex.EncodeToString(b)); got != want {
				t.Fatalf("bytes %x: server read %s (literal %s)", b, got, sdk.QuoteBytes(b))
			}
		}
	})
}
