package configs

import (
	"strings"
	"testing"
)

func TestParseCaptureStart(t *testing.T) {
	const uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	good := []struct {
		in   string
		want CaptureStart
		text string
	}{
		{"", CaptureStart{Kind: StartNow}, "now"},
		{"now", CaptureStart{Kind: StartNow}, "now"},
		{"earliest", CaptureStart{Kind: StartEarliest}, "earliest"},
		{"mysql-bin.000003:1234", CaptureStart{Kind: StartPosition, File: "mysql-bin.000003", Offset: 1234}, "mysql-bin.000003:1234"},
		{"binlog-1.000001:4", CaptureStart{Kind: StartPosition, File: "binlog-1.000001", Offset: 4}, "binlog-1.000001:4"},
		{"0-1-42", CaptureStart{Kind: StartGTID, GTIDs: "0-1-42"}, "gtid:0-1-42"},
		{"0-1-42,1-2-7", CaptureStart{Kind: StartGTID, GTIDs: "0-1-42,1-2-7"}, "gtid:0-1-42,1-2-7"},
		{"gtid:0-1-42", CaptureStart{Kind: StartGTID, GTIDs: "0-1-42"}, "gtid:0-1-42"},
		{uuid + ":1-42", CaptureStart{Kind: StartGTID, GTIDs: uuid + ":1-42"}, "gtid:" + uuid + ":1-42"},
	}
	for _, tt := range good {
		got, err := ParseCaptureStart(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCaptureStart(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if got.String() != tt.text {
			t.Errorf("ParseCaptureStart(%q).String() = %q, want %q", tt.in, got.String(), tt.text)
		}
		if back, err := ParseCaptureStart(got.String()); err != nil || back != got {
			t.Errorf("%q does not read back: %+v, %v", got.String(), back, err)
		}
		if got.Explicit() != (tt.want.Kind != StartNow) {
			t.Errorf("ParseCaptureStart(%q).Explicit() = %v", tt.in, got.Explicit())
		}
	}
	bad := map[string]string{
		"beginning":             "earliest",
		"42":                    "FILE:OFFSET",
		"2026-11-30T10:00:00Z":  "FILE:OFFSET",
		"mysql-bin.000003":      "FILE:OFFSET",
		"mysql-bin.000003:2":    "FILE:OFFSET",
		"mysql-bin.000003:x":    "FILE:OFFSET",
		"gtid:0-1":              "not a GTID set",
		"gtid:" + uuid + ":0-5": "not a GTID set",
		"snapshot":              "now, earliest",
	}
	for in, says := range bad {
		if _, err := ParseCaptureStart(in); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("ParseCaptureStart(%q): got %v, want an error saying %q", in, err, says)
		}
	}
}

func TestBadCaptureStartNamesTheKey(t *testing.T) {
	_, err := Load("", []string{"DATABUS_CAPTURE_START=yesterday"}, nil)
	if err == nil || !strings.Contains(err.Error(), "capture.start") || !strings.Contains(err.Error(), "earliest") {
		t.Errorf("a bad capture.start: got %v, want an error naming the key and the forms", err)
	}
}
