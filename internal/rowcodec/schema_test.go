package rowcodec

import "testing"

func TestJSONCheckColumn(t *testing.T) {
	for clause, want := range map[string]string{
		"json_valid(`j`)":       "j",
		"JSON_VALID(`doc`)":     "doc",
		"json_valid(`we``ird`)": "we`ird",
		" json_valid(`a b`) ":   "a b",
	} {
		if got, ok := JSONCheckColumn(clause); !ok || got != want {
			t.Errorf("%q: got %q, %v; want %q", clause, got, ok, want)
		}
	}
	for _, clause := range []string{"json_valid(`l`) and `id` > 0", "json_valid(`a`) or json_valid(`b`)", "json_valid(`a`b`)", "`x` > 0", "json_valid(x)", ""} {
		if got, ok := JSONCheckColumn(clause); ok {
			t.Errorf("%q: got %q, want no JSON column", clause, got)
		}
	}
}

// ENUM values are kept in the column's character set: information_schema
// gives them in UTF-8, the table map and the text protocol in the set.
func TestEnumValuesInTheColumnsCharacterSet(t *testing.T) {
	c, err := ColumnFromSchema("e", "enum", "enum('Привет','б')", "cp1251", true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Enum[0] != "\xcf\xf0\xe8\xe2\xe5\xf2" {
		t.Fatalf("enum value in cp1251: % X", c.Enum[0])
	}
	v, err := FromText(&c, []byte("\xcf\xf0\xe8\xe2\xe5\xf2"))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := Encode(&c, v); err != nil || ev.JSON != "Привет" {
		t.Errorf("Encode of the text: %#v, %v", ev.JSON, err)
	}
	if ev, err := Encode(&c, int64(1)); err != nil || ev.JSON != "Привет" {
		t.Errorf("Encode of the binlog's index: %#v, %v", ev.JSON, err)
	}
	if _, err := ColumnFromSchema("e", "enum", "enum('😀')", "latin2", true); err == nil {
		t.Error("a value with no latin2 form: got no error")
	}
}
