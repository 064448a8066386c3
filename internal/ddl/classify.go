package ddl

import "strings"

// Statement says what a statement of a binlog query event does.
type Statement int

const (
	// TxnControl statements (SAVEPOINT, ROLLBACK TO, XA …, an empty
	// statement) frame row changes inside a transaction and change nothing.
	TxnControl Statement = iota
	// Begin starts a transaction.
	Begin
	// End commits or rolls back a transaction.
	End
	// Account statements (GRANT, CREATE USER, FLUSH …) change accounts or
	// server state, not schemas; they commit implicitly.
	Account
	// Schema is every other statement: DDL, which commits implicitly.
	Schema
)

// accountPrefixes start the statements of kind Account.
var accountPrefixes = []string{"GRANT", "REVOKE", "CREATE USER", "DROP USER", "ALTER USER", "RENAME USER",
	"SET PASSWORD", "FLUSH", "CREATE ROLE", "DROP ROLE", "SET DEFAULT ROLE"}

// Classify tells what stmt, the text of a binlog query event (a ROW-format
// binlog has no DML statements), does.
func Classify(stmt string) Statement {
	upper := strings.ToUpper(strings.TrimSpace(stmt))
	first, rest, _ := strings.Cut(upper, " ")
	switch first {
	case "":
		return TxnControl
	case "BEGIN":
		return Begin
	case "COMMIT":
		return End
	case "ROLLBACK":
		if second, _, _ := strings.Cut(strings.TrimSpace(rest), " "); second == "TO" {
			return TxnControl
		}
		return End
	case "SAVEPOINT", "XA":
		return TxnControl
	case "RELEASE":
		if strings.HasPrefix(strings.TrimSpace(rest), "SAVEPOINT") {
			return TxnControl
		}
	}
	for _, p := range accountPrefixes {
		if after, ok := strings.CutPrefix(upper, p); ok && (after == "" || !isIdentChar(after[0])) {
			return Account
		}
	}
	return Schema
}

// isIdentChar reports whether c continues an unquoted word.
func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= 0x80
}
