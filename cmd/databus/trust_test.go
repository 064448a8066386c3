package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databus/databus/internal/testenv"
)

// TestRetentionGapStopsApplyAndTail: events removed by the stream's
// retention before apply or a durable tail read them stop both, naming the
// lost range and the way back, instead of skipping to what is left.
func TestRetentionGapStopsApplyAndTail(t *testing.T) {
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	env, _ := captureEnv(t, src)
	env = append(env, "DATABUS_NATS_STREAM_MAX_BYTES=40000")
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)

	ap := startDatabus(t, env, "apply", "--target", dst.DSN(""), "--from", "now")
	testenv.Eventually(t, 20*time.Second, func() error { // "now" is pinned on the target
		var seq uint64
		return dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&seq)
	})
	tail := startDatabus(t, env, "tail", "--durable", "reader", "--from", "now", "--count", "2")
	time.Sleep(time.Second) // the consumer exists
	src.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, pad VARCHAR(200))", "INSERT INTO app.t VALUES (1, ''), (2, '')")
	if code := tail.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("tail exited %d:\n%s", code, tail.out.String())
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		var n int
		if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM app.t").Scan(&n); err != nil || n != 2 {
			return fmt.Errorf("target holds %d rows (%v), want 2", n, err)
		}
		return nil
	})
	_ = ap.cmd.Process.Signal(syscall.SIGTERM)
	if code := ap.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, ap.out.String())
	}

	for i := range 300 {
		src.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d, REPEAT('x', 200))", 100+i))
	}
	time.Sleep(time.Second) // captured

	for _, c := range []struct {
		name string
		args []string
		says []string
	}{
		{"tail", []string{"tail", "--durable", "reader"}, []string{"events lost", "no longer holds sequences", "--from snapshot"}},
		{"apply", []string{"apply", "--target", dst.DSN("")}, []string{"events lost", "no longer holds sequences", "apply --from snapshot"}},
	} {
		code, out := runDatabus(t, env, c.args...)
		if code == 0 {
			t.Errorf("%s: exit 0 after events were lost:\n%s", c.name, out)
		}
		for _, s := range c.says {
			if !strings.Contains(out, s) {
				t.Errorf("%s: output does not say %q:\n%s", c.name, s, out)
			}
		}
	}
	var n int
	if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM app.t").Scan(&n); err != nil || n != 2 {
		t.Errorf("target holds %d rows (%v): apply must not have applied anything after the gap", n, err)
	}
}
