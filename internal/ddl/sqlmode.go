package ddl

import "strings"

// mariadbSQLModes names the bits of MariaDB's sql_mode, lowest first (as
// SELECT @@sql_mode lists them).
var mariadbSQLModes = []string{
	"REAL_AS_FLOAT", "PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "IGNORE_BAD_TABLE_OPTIONS", "ONLY_FULL_GROUP_BY",
	"NO_UNSIGNED_SUBTRACTION", "NO_DIR_IN_CREATE", "POSTGRESQL", "ORACLE", "MSSQL", "DB2", "MAXDB", "NO_KEY_OPTIONS",
	"NO_TABLE_OPTIONS", "NO_FIELD_OPTIONS", "MYSQL323", "MYSQL40", "ANSI", "NO_AUTO_VALUE_ON_ZERO", "NO_BACKSLASH_ESCAPES",
	"STRICT_TRANS_TABLES", "STRICT_ALL_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE", "ALLOW_INVALID_DATES",
	"ERROR_FOR_DIVISION_BY_ZERO", "TRADITIONAL", "NO_AUTO_CREATE_USER", "HIGH_NOT_PRECEDENCE", "NO_ENGINE_SUBSTITUTION",
	"PAD_CHAR_TO_FULL_LENGTH", "EMPTY_STRING_IS_NULL", "SIMULTANEOUS_ASSIGNMENT", "TIME_ROUND_FRACTIONAL",
}

// MariaDBSQLMode returns the text of a MariaDB sql_mode given as its bits
// (the binlog's), as SELECT @@sql_mode shows it and SET sql_mode takes
// it; false when a bit is unknown (a newer server).
func MariaDBSQLMode(bits uint64) (string, bool) {
	var names []string
	for i := 0; bits != 0; i++ {
		if bits&1 != 0 {
			if i >= len(mariadbSQLModes) {
				return "", false
			}
			names = append(names, mariadbSQLModes[i])
		}
		bits >>= 1
	}
	return strings.Join(names, ","), true
}
