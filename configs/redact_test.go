package configs

import "testing"

func TestRedactDSNMasksThePassword(t *testing.T) {
	for in, want := range map[string]string{
		"root:pw@tcp(127.0.0.1:3306)/":         "root:***@tcp(127.0.0.1:3306)/",
		"root@tcp(127.0.0.1:3306)/":            "root@tcp(127.0.0.1:3306)/",
		"app:p@ss:w@rd@tcp(db:3306)/?tls=true": "app:***@tcp(db:3306)/?tls=true",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
