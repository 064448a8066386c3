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
