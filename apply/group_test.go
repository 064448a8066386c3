package apply

import (
	"errors"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// A command sent behind one the target refused commits nothing, even when
// the refusal ended the transaction (as a deadlock does: here a ROLLBACK
// right before the refused statement stands in for it), and the group's
// rollback leaves the session ready for the next group.
func TestNothingSentBehindAFailedCommandCommits(t *testing.T) {
	dst := testenv.StartMariaDB(t)
	dst.Exec(t, "CREATE DATABASE w", "CREATE TABLE w.t (id INT PRIMARY KEY)")
	a, err := New(Config{TargetDSN: dst.DSN(""), Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	conn, err := a.dialBatch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := &group{conn: conn, began: true, last: &sdk.Message{Sequence: 7}}
	if err := g.pipeline(t.Context(), "BEGIN;INSERT INTO w.t VALUES (1);ROLLBACK;INSERT INTO w.missing VALUES (1)", 2); err != nil {
		t.Fatalf("the first command: %v", err)
	}
	err = g.pipeline(t.Context(), "INSERT INTO w.t VALUES (2);INSERT INTO w.t VALUES (3)", 2)
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1146 {
		t.Fatalf("reading the first command's results: got %v, want the missing table's error 1146", err)
	}
	var bf *batchFailed
	if err := g.failedInFlight(t.Context(), err); !errors.As(err, &bf) || bf.upTo != 7 {
		t.Fatalf("the group's failure: got %v, want a batchFailed up to sequence 7", err)
	}
	var n int
	if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM w.t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the target holds %d rows after the rollback, want 0: a command behind the failed one committed", n)
	}
	if err := conn.Exec(t.Context(), "BEGIN;INSERT INTO w.t VALUES (4);COMMIT"); err != nil {
		t.Fatalf("the session after the rollback: %v", err)
	}
}
