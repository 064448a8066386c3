package snapshot

import "testing"

// Tables are split into key ranges only when whole tables cannot be
// shared out evenly among the connections.
func TestSharedOutWhole(t *testing.T) {
	for _, c := range []struct {
		name    string
		rows    []int64
		readers int
		want    bool
	}{
		{"one connection", []int64{10_000_000}, 1, true},
		{"one large table", []int64{1_000_000}, 2, false},
		{"one large table and small ones", []int64{2_000_000, 10_000, 20_000}, 4, false},
		// The benchmark's tables: 520k | 261k + 209k.
		{"tables that balance", []int64{261_000, 209_000, 520_000}, 2, true},
		{"a quarter over the share", []int64{625_000, 375_000}, 2, true},
		{"more than a quarter over", []int64{630_000, 370_000}, 2, false},
		{"many small tables", []int64{100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000}, 4, true},
		{"fewer tables than connections", []int64{300_000, 300_000}, 4, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tables := make([]snapTable, len(c.rows))
			var total int64
			for i, n := range c.rows {
				tables[i].estimate = n
				total += n
			}
			share := max(total/int64(c.readers), minSpanRows)
			if got := sharedOutWhole(tables, c.readers, share); got != c.want {
				t.Errorf("sharedOutWhole(%v rows, %d connections) = %v, want %v", c.rows, c.readers, got, c.want)
			}
		})
	}
}
