package ddl_test

import (
	"strings"
	"testing"

	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/testenv"
)

// The names of the sql_mode bits are the server's.
func TestMariaDBSQLModeNamesEachBitAsTheServerDoes(t *testing.T) {
	db := testenv.StartMariaDB(t).DB(t)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for bit := 0; bit < 64; bit++ {
		var server string
		_, err := conn.ExecContext(t.Context(), "SET SESSION sql_mode = ?", uint64(1)<<bit)
		if err == nil {
			err = conn.QueryRowContext(t.Context(), "SELECT @@SESSION.sql_mode").Scan(&server)
		}
		ours, ok := ddl.MariaDBSQLMode(uint64(1) << bit)
		switch {
		case err != nil && ok:
			t.Errorf("bit %d: the server refuses it (%v), databus names it %s", bit, err, ours)
		case err == nil && !ok:
			t.Errorf("bit %d: the server names it %s, databus does not know it", bit, server)
		case err == nil && ours != server && !expands(bit):
			t.Errorf("bit %d: the server names it %s, databus %s", bit, server, ours)
		case err == nil && expands(bit) && !strings.Contains(","+server+",", ","+ours+","):
			t.Errorf("bit %d: the server names it %s, databus %s", bit, server, ours)
		}
	}
}

// expands reports the bits that stand for a combination: the server lists
// the modes they imply beside them.
func expands(bit int) bool {
	name, _ := ddl.MariaDBSQLMode(uint64(1) << bit)
	switch name {
	case "POSTGRESQL", "ORACLE", "MSSQL", "DB2", "MAXDB", "MYSQL323", "MYSQL40", "ANSI", "TRADITIONAL":
		return true
	}
	return false
}
