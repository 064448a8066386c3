package sdk

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

func TestStatementRefusesEventsWhoseValuesDoNotFit(t *testing.T) {
	cols := []Column{{Name: "id", Type: "int"}, {Name: "name", Type: "varchar", Charset: "utf8mb4"}, {Name: "f", Type: "float", Nullable: true}}
	ok := Event{Op: OpUpdate, Database: "d", Table: "t", Columns: cols, PrimaryKey: []string{"id"},
		Before: map[string]any{"id": json.Number("1"), "name": "a", "f": nil},
		After:  map[string]any{"id": json.Number("2"), "name": "it's", "f": json.Number("1.5")}}
	got, err := ok.Statement()
	if want := "UPDATE `d`.`t` SET `id`=2,`name`='it''s',`f`=1.5 WHERE `id`=1"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	for name, tc := range map[string]struct {
		mut  func(e *Event)
		want string
	}{
		"SQL in a number":       {func(e *Event) { e.After["id"] = "1; DROP DATABASE x" }, "is not a number"},
		"missing value":         {func(e *Event) { delete(e.After, "name") }, "no value for column name"},
		"unknown key column":    {func(e *Event) { e.PrimaryKey = []string{"nope"} }, `primary key column "nope"`},
		"no columns":            {func(e *Event) { e.Columns = nil }, "describes no columns"},
		"no table":              {func(e *Event) { e.Table = "" }, "no database or table"},
		"a DDL event":           {func(e *Event) { e.Op = OpDDL }, "not a row change"},
		"a value of wrong type": {func(e *Event) { e.Before["id"] = true }, "Go type bool"},
	} {
		e := ok
		e.Before, e.After = maps.Clone(ok.Before), maps.Clone(ok.After)
		tc.mut(&e)
		if s, err := e.Statement(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %q, %v; want an error containing %q", name, s, err, tc.want)
		}
	}
	// Identifiers are quoted, whatever they hold.
	odd := Event{Op: OpDelete, Database: "a`b", Table: "t", Columns: cols[:1], Before: map[string]any{"id": json.Number("7")}}
	if got, _ := odd.Statement(); got != "DELETE FROM `a``b`.`t` WHERE `id`<=>7 LIMIT 1" {
		t.Errorf("got %q", got)
	}
}

func TestChangeStatementSetsOnlyTheChangedColumns(t *testing.T) {
	cols := []Column{{Name: "id", Type: "int"}, {Name: "name", Type: "varchar", Charset: "utf8mb4", Nullable: true},
		{Name: "n", Type: "decimal(5,2)", Nullable: true}, {Name: "g", Type: "int", Generated: true}}
	ev := Event{Op: OpUpdate, Database: "d", Table: "t", Columns: cols, PrimaryKey: []string{"id"},
		Before: map[string]any{"id": json.Number("1"), "name": "a", "n": nil, "g": json.Number("1")},
		After:  map[string]any{"id": json.Number("1"), "name": "b", "n": nil, "g": json.Number("2")}}
	for _, tc := range []struct {
		name  string
		after map[string]any
		want  string
	}{
		{"one changed", nil, "UPDATE `d`.`t` SET `name`='b' WHERE `id`=1"},
		{"null to a value, key changed", map[string]any{"id": json.Number("2"), "name": "a", "n": json.Number("1.50"), "g": nil},
			"UPDATE `d`.`t` SET `id`=2,`n`=1.50 WHERE `id`=1"},
		{"nothing changed", map[string]any{"id": json.Number("1"), "name": "a", "n": nil, "g": json.Number("1")},
			"UPDATE `d`.`t` SET `id`=1,`name`='a',`n`=NULL WHERE `id`=1"},
	} {
		e := ev
		if tc.after != nil {
			e.After = tc.after
		}
		if got, err := e.ChangeStatement(); err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// Values no decoded event holds are compared without panicking, and
	// refused by the literal encoder.
	odd := ev
	odd.Before = map[string]any{"id": json.Number("1"), "name": map[string]any{}, "n": nil, "g": nil}
	odd.After = map[string]any{"id": json.Number("1"), "name": map[string]any{}, "n": nil, "g": nil}
	if _, err := odd.ChangeStatement(); err == nil {
		t.Error("an update with a map value built a statement")
	}
}
