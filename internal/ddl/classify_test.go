package ddl

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		stmt string
		want Statement
	}{
		{"BEGIN", Begin},
		{" begin ", Begin},
		{"COMMIT", End},
		{"ROLLBACK", End},
		{"ROLLBACK TO SAVEPOINT a", TxnControl},
		{"SAVEPOINT a", TxnControl},
		{"RELEASE SAVEPOINT a", TxnControl},
		{"XA START 'x'", TxnControl},
		{"XA COMMIT 'x'", TxnControl},
		{"", TxnControl},
		{"GRANT SELECT ON *.* TO 'u'@'%'", Account},
		{"CREATE USER 'u'@'%'", Account},
		{"flush privileges", Account},
		{"CREATE TABLE t (id INT)", Schema},
		{"ALTER TABLE t ADD c INT", Schema},
		{"create user_table_like_name (id int)", Schema},
		{"DROP DATABASE shop", Schema},
		{"CREATE USERS (id INT)", Schema},
		{"FLUSH TABLES", Account},
	}
	for _, tt := range tests {
		if got := Classify(tt.stmt); got != tt.want {
			t.Errorf("Classify(%q) = %d, want %d", tt.stmt, got, tt.want)
		}
	}
}
