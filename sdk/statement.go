package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Statement builds the schema-qualified statement that applies a row
// event (insert, update or delete) from its structured fields (Columns,
// PrimaryKey, Before, After), never from its SQL text. For an event
// capture wrote it equals [Event.SQL]; an event whose values do not fit
// its columns (a forged or damaged one) is an error, never a statement.
// Updates and deletes name the row by its primary key, or by every column
// with LIMIT 1 when the table has none.
func (e *Event) Statement() (string, error) { return e.statement(false) }

// ChangeStatement is [Event.Statement] except that an update sets only
// the columns whose value it changes, as a replica of a server with
// binlog_row_image=MINIMAL does: the same change on a target that holds
// the before image, in a shorter statement. An update that changes no
// column sets them all.
func (e *Event) ChangeStatement() (string, error) { return e.statement(true) }

func (e *Event) statement(changed bool) (string, error) {
	if e.Op == OpInsert {
		tuple, err := e.Tuple()
		if err != nil {
			return "", err
		}
		head, _ := e.InsertHead() // Tuple checked the table
		return head + tuple, nil
	}
	if e.Op != OpUpdate && e.Op != OpDelete {
		return "", fmt.Errorf("a %q event is not a row change", e.Op)
	}
	if err := e.checkTable(); err != nil {
		return "", err
	}
	var b strings.Builder
	switch e.Op {
	case OpUpdate:
		b.WriteString("UPDATE " + e.qualified() + " SET ")
		n := 0
		var err error
		if changed {
			n, err = e.appendWritten(&b, e.After, "after", e.changed)
		}
		if n == 0 && err == nil { // all of them, or none changed
			_, err = e.appendWritten(&b, e.After, "after", func(Column) bool { return true })
		}
		if err != nil {
			return "", err
		}
		if err := e.appendWhere(&b); err != nil {
			return "", err
		}
	case OpDelete:
		b.WriteString("DELETE FROM " + e.qualified())
		if err := e.appendWhere(&b); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// InsertHead returns "INSERT INTO `db`.`t` (`a`,`b`) VALUES ": an insert
// into the event's table of the columns it writes (every column but the
// generated ones), in table order, for [Event.Tuple]s to follow. A
// snapshot row's is the one its SQL starts with.
func (e *Event) InsertHead() (string, error) {
	if e.head != "" {
		return e.head, nil
	}
	if err := e.checkTable(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + e.qualified() + " (")
	first := true
	for _, c := range e.Columns {
		if c.Generated {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(QuoteIdent(c.Name))
	}
	b.WriteString(") VALUES ")
	return b.String(), nil
}

// Tuple returns "(1,'x')": the literals of the after image's values in
// [Event.InsertHead] order, for an insert (or a snapshot row, whose is the
// one its SQL ends with, worked out from its values when it was read).
func (e *Event) Tuple() (string, error) {
	if e.tuple != "" {
		return e.tuple, nil
	}
	if err := e.checkTable(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteByte('(')
	if _, err := e.appendWritten(&b, e.After, "after", nil); err != nil {
		return "", err
	}
	b.WriteByte(')')
	return b.String(), nil
}

func (e *Event) qualified() string { return QuoteIdent(e.Database) + "." + QuoteIdent(e.Table) }

// checkTable checks what every statement needs: a table and its columns.
func (e *Event) checkTable() error {
	if e.Database == "" || e.Table == "" {
		return errors.New("the event names no database or table")
	}
	if len(e.Columns) == 0 {
		return fmt.Errorf("the event on %s.%s describes no columns", e.Database, e.Table)
	}
	return nil
}

// changed reports whether the update changes column c's value (a value
// missing from an image counts as changed).
func (e *Event) changed(c Column) bool {
	before, ok := e.Before[c.Name]
	after, ok2 := e.After[c.Name]
	if !ok || !ok2 {
		return true
	}
	switch b := before.(type) {
	case nil:
		return after != nil
	case string:
		a, ok := after.(string)
		return !ok || a != b
	case json.Number:
		a, ok := after.(json.Number)
		return !ok || a != b
	}
	return true // a value no decoded event holds: written, and checked by Literal
}

// appendWritten appends img's values of the written (not generated)
// columns, comma-separated: each as its literal, or as `col`=literal for
// the columns assign selects when it is not nil. It returns how many it
// appended.
func (e *Event) appendWritten(b *strings.Builder, img map[string]any, name string, assign func(Column) bool) (int, error) {
	n := 0
	for _, c := range e.Columns {
		if c.Generated || assign != nil && !assign(c) {
			continue
		}
		lit, err := imageLiteral(c, img, name)
		if err != nil {
			return n, err
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		if assign != nil {
			b.WriteString(QuoteIdent(c.Name) + "=")
		}
		b.WriteString(lit)
	}
	return n, nil
}

// appendWhere appends the WHERE clause naming the before image's row: by
// primary key, or by every column with LIMIT 1 without one. A FLOAT
// column compares as a double, so its literal is cast to FLOAT to match
// the stored value exactly.
func (e *Event) appendWhere(b *strings.Builder) error {
	b.WriteString(" WHERE ")
	match := func(c Column, op string) error {
		lit, err := imageLiteral(c, e.Before, "before")
		if err != nil {
			return err
		}
		b.WriteString(QuoteIdent(c.Name) + op)
		if lit != "NULL" && strings.HasPrefix(c.Type, "float") {
			lit = "CAST(" + lit + " AS FLOAT)"
		}
		b.WriteString(lit)
		return nil
	}
	if len(e.PrimaryKey) > 0 {
		for n, name := range e.PrimaryKey {
			i := slices.IndexFunc(e.Columns, func(c Column) bool { return c.Name == name })
			if i < 0 {
				return fmt.Errorf("primary key column %q is not among the columns of %s.%s", name, e.Database, e.Table)
			}
			if n > 0 {
				b.WriteString(" AND ")
			}
			if err := match(e.Columns[i], "="); err != nil {
				return err
			}
		}
		return nil
	}
	for n, c := range e.Columns {
		if n > 0 {
			b.WriteString(" AND ")
		}
		if err := match(c, "<=>"); err != nil {
			return err
		}
	}
	b.WriteString(" LIMIT 1")
	return nil
}

// imageLiteral returns the literal of column c's value in img (the
// image called name), which must hold one.
func imageLiteral(c Column, img map[string]any, name string) (string, error) {
	v, ok := img[c.Name]
	if !ok {
		return "", fmt.Errorf("the %s image has no value for column %s", name, c.Name)
	}
	return Literal(c, v)
}
