package sdk

import (
	"strings"
	"testing"
)

func TestEncodeToken(t *testing.T) {
	tests := []struct{ name, want string }{
		{"orders", "orders"},
		{"my_db-1", "my_db-1"},
		{"my.db", "my%2Edb"},
		{"t 1", "t%201"},
		{"a*b>c", "a%2Ab%3Ec"},
		{"50%", "50%25"},
		{"café", "caf%C3%A9"},
		{"_", "%5F"},
		{"__x", "__x"},
	}
	for _, tt := range tests {
		if got := EncodeToken(tt.name); got != tt.want {
			t.Errorf("EncodeToken(%q): got %q, want %q", tt.name, got, tt.want)
		}
		back, err := DecodeToken(tt.want)
		if err != nil || back != tt.name {
			t.Errorf("DecodeToken(%q): got %q, %v, want %q", tt.want, back, err, tt.name)
		}
	}
}

func TestSubject(t *testing.T) {
	if got, want := Subject("src", "shop", "orders", OpInsert), "databus.src.shop.orders.insert"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := Subject("src", "", "", OpDDL), "databus.src._._.ddl"; got != want {
		t.Errorf("DDL without db: got %s, want %s", got, want)
	}
	if got, want := FilterSubject("src", "shop", "", ""), "databus.src.shop.*.*"; got != want {
		t.Errorf("filter: got %s, want %s", got, want)
	}
}

func TestDecodeTokenRejectsBadEscapes(t *testing.T) {
	for _, tok := range []string{"%", "%4", "%ZZ", "a%G1"} {
		if _, err := DecodeToken(tok); err == nil {
			t.Errorf("DecodeToken(%q): got no error", tok)
		}
	}
}

// FuzzToken checks that every name encodes to one valid subject token and
// decodes back to itself.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"orders", "my.db", "t 1", "*", ">", "café", "_", "%41", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		tok := EncodeToken(name)
		if name != "" && tok == "" {
			t.Fatalf("empty token for %q", name)
		}
		if strings.ContainsAny(tok, ". *>\t\r\n") {
			t.Fatalf("token %q for %q is not a valid subject token", tok, name)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] >= 0x80 {
				t.Fatalf("token %q for %q is not ASCII", tok, name)
			}
		}
		back, err := DecodeToken(tok)
		if err != nil || back != name {
			t.Fatalf("round trip of %q: got %q, %v", name, back, err)
		}
	})
}

func TestPositionCompare(t *testing.T) {
	a := Position{File: "mysql-bin.000009", Offset: 900, Row: 3}
	b := Position{File: "mysql-bin.000010", Offset: 4}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Errorf("file order across the 9→10 boundary is wrong")
	}
	c := a
	c.Row = 4
	if a.Compare(c) != -1 {
		t.Errorf("row order is wrong")
	}
}

func TestDecodeEventRefusesNewerVersion(t *testing.T) {
	_, err := DecodeEvent([]byte(`{"v": 99, "op": "insert"}`))
	if err == nil || !strings.Contains(err.Error(), "v99") {
		t.Errorf("got %v, want ErrUnsupportedVersion", err)
	}
	ev, err := DecodeEvent([]byte(`{"v":1,"op":"insert","after":{"id":"18446744073709551615","n":12345678901234567890}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.After["n"]; got == nil || got.(interface{ String() string }).String() != "12345678901234567890" {
		t.Errorf("numbers must decode exactly: got %v", got)
	}
}

func TestIdempotentSQL(t *testing.T) {
	ins := Event{Op: OpInsert, SQL: "INSERT INTO `a`.`b` (`id`) VALUES (1)"}
	if got, want := ins.IdempotentSQL(), "REPLACE INTO `a`.`b` (`id`) VALUES (1)"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	del := Event{Op: OpDelete, SQL: "DELETE FROM `a`.`b` WHERE `id`=1"}
	if del.IdempotentSQL() != del.SQL {
		t.Errorf("delete changed: %s", del.IdempotentSQL())
	}
}
