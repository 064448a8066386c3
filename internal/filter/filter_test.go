package filter

import (
	"testing"
)

func TestFilter(t *testing.T) {
	tests := []struct {
		name      string
		f         Filter
		db, table string
		want      bool
	}{
		{"all: user table", Filter{}, "shop", "orders", true},
		{"all: system db", Filter{}, "mysql", "user", false},
		{"all: exclude table", Filter{Exclude: []string{"shop.audit"}}, "shop", "audit", false},
		{"all: exclude other table", Filter{Exclude: []string{"shop.audit"}}, "shop", "orders", true},
		{"all: exclude db", Filter{Exclude: []string{"tmp"}}, "tmp", "x", false},
		{"all: exclude pattern", Filter{Exclude: []string{"shop.cache_*"}}, "shop", "cache_1", false},
		{"dbs: listed", Filter{Databases: []string{"shop", "crm"}}, "crm", "people", true},
		{"dbs: not listed", Filter{Databases: []string{"shop", "crm"}}, "hr", "people", false},
		{"dbs: pattern", Filter{Databases: []string{"shop_*"}}, "shop_eu", "orders", true},
		{"tables: listed", Filter{Tables: []string{"shop.orders"}}, "shop", "orders", true},
		{"tables: sibling", Filter{Tables: []string{"shop.orders"}}, "shop", "customers", false},
		{"tables and dbs add up", Filter{Databases: []string{"crm"}, Tables: []string{"shop.orders"}}, "crm", "x", true},
		{"explicit system db", Filter{Databases: []string{"mysql"}}, "mysql", "user", true},
		{"dotted db in backticks", Filter{Tables: []string{"`my.db`.`t 1`"}}, "my.db", "t 1", true},
		{"dotted db: other table", Filter{Tables: []string{"`my.db`.`t 1`"}}, "my.db", "t 2", false},
		{"exclude wins", Filter{Databases: []string{"shop"}, Exclude: []string{"shop.orders"}}, "shop", "orders", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Table(tt.db, tt.table); got != tt.want {
				t.Errorf("Table(%q, %q): got %v, want %v", tt.db, tt.table, got, tt.want)
			}
		})
	}
	f := Filter{Tables: []string{"shop.orders"}}
	if !f.Database("shop") || f.Database("crm") {
		t.Errorf("Database: a table filter must select its database and only it")
	}
}
