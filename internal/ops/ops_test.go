package ops

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/capture"
)

func TestRateIsOverTheLastTenSeconds(t *testing.T) {
	var r rateMeter
	if r.perSecond() != 0 {
		t.Fatal("a rate without samples")
	}
	start := time.Unix(1000, 0)
	for i := range 31 {
		// 100 events a second for 20 s, then 10 a second.
		n := uint64(min(i, 20)*100 + max(i-20, 0)*10)
		r.add(start.Add(time.Duration(i)*time.Second), n)
	}
	if got := r.perSecond(); got != 10 {
		t.Errorf("rate %v, want 10 (the last 10 s only)", got)
	}
	r.add(start.Add(32*time.Second), 0) // a counter that went back: no rate
	if got := r.perSecond(); got != 0 {
		t.Errorf("rate %v after a reset", got)
	}
}

func TestSemverForMicro(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3-rc.1": "1.2.3-rc.1", "dev": "0.0.0+dev", "1b66f50-dirty": "0.0.0+1b66f50-dirty",
		"v0.4.0-3-g1b66f50": "0.4.0-3-g1b66f50", "": "0.0.0", "a b/c": "0.0.0+a-b-c",
	} {
		if got := semver(in); got != want {
			t.Errorf("semver(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel accepted loud")
	}
}

func TestApplyLagIsZeroOnlyWhenCaughtUp(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		p    apply.Progress
		lag  time.Duration
		ok   bool
	}{
		{"nothing applied", apply.Progress{Applying: true}, 0, false},
		{"caught up", apply.Progress{Applying: true, Applied: now.Add(-time.Minute), Lag: time.Second}, 0, true},
		{"behind", apply.Progress{Applying: true, Pending: 5, Applied: now.Add(-10 * time.Second), Lag: 2 * time.Second}, 12 * time.Second, true},
		{"stuck", apply.Progress{Retrying: "x", Applied: now.Add(-10 * time.Second), Lag: time.Second}, 11 * time.Second, true},
	} {
		lag, ok := applyState{Progress: c.p, now: now}.lag()
		if lag != c.lag || ok != c.ok {
			t.Errorf("%s: lag %v %v, want %v %v", c.name, lag, ok, c.lag, c.ok)
		}
	}
}

func TestReadiness(t *testing.T) {
	n := NewNode("s", "n1", "dev", new(slog.LevelVar), slog.New(slog.DiscardHandler))
	if ok, why := n.Ready(); ok || why != "starting" {
		t.Errorf("a starting node: %v %q", ok, why)
	}
	n.Waiting("")
	if ok, why := n.Ready(); !ok || why == "" {
		t.Errorf("a standby: %v %q", ok, why)
	}
	n.SetLeading(true)
	end := n.Lead(t.Context(), capture.New(capture.Config{Source: "s"}, nil), nil)
	if ok, why := n.Ready(); ok || why != "starting capture" {
		t.Errorf("a leader before capture reads: %v %q", ok, why)
	}
	end()
	n.Stopped(errors.New("boom"))
	if ok, why := n.Ready(); ok || why == "" || n.Info().State != StateStopped {
		t.Errorf("a stopped capture: %v %q", ok, why)
	}
}
