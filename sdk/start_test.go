package sdk

import (
	"strings"
	"testing"
	"time"
)

func TestParseStart(t *testing.T) {
	for _, tt := range []struct {
		in, kind, str string
	}{
		{"", "beginning", "beginning"},
		{"now", "now", "now"},
		{"snapshot", "snapshot", "snapshot"},
		{"snapshot:20261130T100000Z", "snapshot", "snapshot:20261130T100000Z"},
		{"42", "sequence", "42"},
		// Read as stream sequence 2026 until December 2026.
		{"2026-11-30T10:00:00Z", "time", "2026-11-30T10:00:00Z"},
		{"2026-11-30T11:00:00.5+01:00", "time", "2026-11-30T10:00:00.5Z"},
		{"gtid:0-1-42", "gtid", "gtid:0-1-42"},
		{"gtid:0-1-42,1-2-7", "gtid", "gtid:0-1-42,1-2-7"},
		{"gtid:3E11FA47-71CA-11E1-9E33-C80AA9429562:1-42:50", "gtid", "gtid:3E11FA47-71CA-11E1-9E33-C80AA9429562:1-42:50"},
		{"mysql-bin.000003:1234", "position", "mysql-bin.000003:1234"},
	} {
		s, err := ParseStart(tt.in)
		if err != nil {
			t.Errorf("ParseStart(%q): %v", tt.in, err)
			continue
		}
		if s.Kind() != tt.kind || s.String() != tt.str {
			t.Errorf("ParseStart(%q) = %s %q, want %s %q", tt.in, s.Kind(), s, tt.kind, tt.str)
		}
		if again, err := ParseStart(s.String()); err != nil || again.String() != s.String() {
			t.Errorf("ParseStart(%q) again = %q, %v", s, again, err)
		}
	}
	for _, in := range []string{"0", "later", "2026-11-30", "2026-11-30T10:00:00", "gtid:", "gtid:abc", "gtid:0-1", "gtid:0-1-2,3E11FA47-71CA-11E1-9E33-C80AA9429562:1",
		"gtid:3E11FA47-71CA-11E1-9E33-C80AA9429562:5-2", "mysql-bin.000003:x", "mysql-bin.000003:2", ":12", "snapshot:"} {
		if s, err := ParseStart(in); err == nil {
			t.Errorf("ParseStart(%q) = %s %q, want an error", in, s.Kind(), s)
		} else if !strings.Contains(err.Error(), "gtid:<set>") || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseStart(%q): error %q does not name the value and the forms", in, err)
		}
	}
}

func TestGTIDSetContains(t *testing.T) {
	const u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	for _, tt := range []struct {
		set, gtid          string
		in, before, beyond bool
	}{
		{"0-1-42", "0-1-42", true, false, false},
		{"0-1-42", "0-2-41", true, false, true}, // the server id does not matter
		{"0-1-42", "0-1-43", false, true, false},
		{"0-1-42", "0-1-44", false, false, false},
		{"0-1-42", "1-1-1", false, true, false},
		{"0-1-42", "1-1-2", false, false, false},
		{"0-1-42,1-1-5", "1-1-5", true, false, false},
		{u + ":1-42", strings.ToUpper(u) + ":42", true, false, false},
		{u + ":1-42", u + ":43", false, true, false},
		{u + ":1-42:50-60", u + ":45", false, false, true},
		{u + ":1-42:50-60", u + ":50", true, false, true},
		{u + ":1-42", "9e11fa47-71ca-11e1-9e33-c80aa9429562:1", false, true, false},
	} {
		g, err := parseGTIDSet(tt.set)
		if err != nil {
			t.Fatal(err)
		}
		in, before := g.contains(tt.gtid)
		if in != tt.in || before != tt.before || g.beyond(tt.gtid) != tt.beyond {
			t.Errorf("%s holds %s: %v, ends right before it %v, goes beyond it %v; want %v %v %v", tt.set, tt.gtid, in, before, g.beyond(tt.gtid), tt.in, tt.before, tt.beyond)
		}
	}
}

func TestStartConstructors(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		s    Start
		want string
	}{
		{StartAtTime(at), "2026-11-30T10:00:00Z"},
		{StartAtGTID("0-1-42"), "gtid:0-1-42"},
		{StartAtPosition("mysql-bin.000003", 1234), "mysql-bin.000003:1234"},
		{StartAtSequence(7), "7"},
	} {
		if tt.s.String() != tt.want {
			t.Errorf("%s start is %q, want %q", tt.s.Kind(), tt.s, tt.want)
		}
	}
}
