package mysqlwire_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/internal/testenv"
)

func dial(t *testing.T, db *testenv.MariaDB) *mysqlwire.Conn {
	t.Helper()
	c, err := mysqlwire.Dial(t.Context(), mysqlwire.Config{Addr: db.Addr(), User: "root", ConnectTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, MultiStatements: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func errNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Pipelined commands run in order; each one's results report the first
// statement the server refused, after which it runs none of that
// command's statements, and the next command runs.
func TestPipelinedCommands(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE w", "CREATE TABLE w.t (id INT PRIMARY KEY, v INT)")
	c := dial(t, db)
	for _, q := range []string{
		"INSERT INTO w.t VALUES (1, 1); INSERT INTO w.t VALUES (2, 2)",
		"INSERT INTO w.t VALUES (3, 3); INSERT INTO w.t VALUES (1, 9); INSERT INTO w.t VALUES (4, 4)", // a duplicate key
		"SELECT * FROM w.t; UPDATE w.t SET v = v + 10 WHERE id = 2",                                   // a result set read past
	} {
		if err := c.Send(q); err != nil {
			t.Fatal(err)
		}
	}
	if c.Pending() != 3 {
		t.Fatalf("%d commands pending, want 3", c.Pending())
	}
	if err := c.Results(t.Context()); err != nil {
		t.Fatalf("first command: %v", err)
	}
	if err := c.Results(t.Context()); errNumber(err) != 1062 {
		t.Fatalf("second command: got %v, want the duplicate key error 1062", err)
	}
	if err := c.Results(t.Context()); err != nil {
		t.Fatalf("third command: %v", err)
	}
	if err := c.Results(t.Context()); err == nil {
		t.Fatal("results with no command pending: want an error")
	}
	var got []string
	err := c.Query(t.Context(), "SELECT id, v, NULL, '' FROM w.t ORDER BY id", func(row [][]byte) error {
		if row[2] != nil || row[3] == nil || len(row[3]) != 0 {
			t.Errorf("NULL and '' read as %q and %q", row[2], row[3])
		}
		got = append(got, string(row[0])+"="+string(row[1]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "1=1 2=12 3=3"; strings.Join(got, " ") != want {
		t.Errorf("rows: got %s, want %s (id 4 came after the refused statement)", strings.Join(got, " "), want)
	}
	if err := c.Exec(t.Context(), "SELECT * FROM w.missing"); errNumber(err) != 1146 {
		t.Errorf("a missing table: got %v, want error 1146", err)
	}
	if err := c.Exec(t.Context(), "DO 1"); err != nil {
		t.Errorf("the connection after an error: %v", err)
	}
}

// Statements and values over the protocol's 16 MiB packet size travel in
// several packets each way.
func TestLargePackets(t *testing.T) {
	db := testenv.StartMariaDB(t, "--max-allowed-packet=64M")
	db.Exec(t, "CREATE DATABASE w", "CREATE TABLE w.b (id INT PRIMARY KEY, v LONGBLOB)")
	c := dial(t, db)
	const head, tail = "DELETE FROM w.b; INSERT INTO w.b VALUES (1, '", "')"
	// A command of exactly one full packet (command byte included) is
	// followed by an empty one.
	exact := 1<<24 - 1 - 1 - len(head) - len(tail)
	for _, n := range []int{exact, 20 << 20} {
		v := bytes.Repeat([]byte{'x'}, n)
		if err := c.Exec(t.Context(), head+string(v)+tail); err != nil {
			t.Fatalf("inserting %d bytes: %v", n, err)
		}
		var got []byte
		if err := c.Query(t.Context(), "SELECT v, 'after' FROM w.b", func(row [][]byte) error {
			got = append(got[:0], row[0]...)
			if string(row[1]) != "after" {
				t.Errorf("the value after %d bytes: %q", n, row[1])
			}
			return nil
		}); err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, v) {
			t.Errorf("read %d bytes back, want %d", len(got), n)
		}
	}
}
