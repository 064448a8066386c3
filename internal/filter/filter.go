package filter

import (
	"path"
	"slices"
	"strings"
)

// SystemDatabases are the server's own databases, never captured unless
// named explicitly.
var SystemDatabases = []string{"mysql", "information_schema", "performance_schema", "sys"}

// Filter selects the captured tables. Databases and Tables add up; an empty
// Filter captures every database but the system ones. Exclude wins over
// both. Entries are path.Match patterns: "shop", "shop.orders", "tmp_*",
// "shop.cache_*"; a name holding a dot goes in backticks: "`my.db`.orders".
type Filter struct {
	Databases []string
	Tables    []string
	Exclude   []string
}

// splitName splits a filter entry into database and table patterns. A part
// holding a dot is written in backticks: "`my.db`.orders".
func splitName(entry string) (db, table string, hasTable bool) {
	if strings.HasPrefix(entry, "`") {
		if end := strings.Index(entry[1:], "`"); end >= 0 {
			db, rest := entry[1:end+1], entry[end+2:]
			if t, ok := strings.CutPrefix(rest, "."); ok {
				return db, strings.Trim(t, "`"), true
			}
			return db, "", false
		}
	}
	db, table, hasTable = strings.Cut(entry, ".")
	return db, strings.Trim(table, "`"), hasTable
}

func match(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// excluded reports whether an exclude entry covers db.table; table "" asks
// about the whole database.
func (f Filter) excluded(db, table string) bool {
	for _, e := range f.Exclude {
		edb, etable, hasTable := splitName(e)
		if !match(edb, db) {
			continue
		}
		if !hasTable || (table != "" && match(etable, table)) {
			return true
		}
	}
	return false
}

// Table reports whether changes of db.table are captured.
func (f Filter) Table(db, table string) bool { return f.selects(db, table) }

// Database reports whether anything of db may be captured, which decides
// whether statements that concern the database as a whole (DDL) are
// published.
func (f Filter) Database(db string) bool { return f.selects(db, "") }

// selects applies the filter to db.table, or to any table of db when table
// is "".
func (f Filter) selects(db, table string) bool {
	if f.excluded(db, table) {
		return false
	}
	if len(f.Databases) == 0 && len(f.Tables) == 0 {
		return !slices.Contains(SystemDatabases, db)
	}
	for _, d := range f.Databases {
		if match(d, db) {
			return true
		}
	}
	for _, t := range f.Tables {
		tdb, ttable, _ := splitName(t)
		if match(tdb, db) && (table == "" || match(ttable, table)) {
			return true
		}
	}
	return false
}
