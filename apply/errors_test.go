package apply_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// runUntilError runs an applier until it stops by itself and returns its
// error.
func runUntilError(t *testing.T, cfg apply.Config) error {
	t.Helper()
	a, err := apply.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("the applier did not stop by itself")
	}
	return err
}

// waitPublished waits until the stream's last sequence is at least seq.
func waitPublished(t *testing.T, js *testenv.JetStream, seq uint64) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		last, err := sdk.LastSequence(t.Context(), js.Conn(t), "test")
		if err != nil {
			return err
		}
		if last < seq {
			return fmt.Errorf("stream at %d, want %d", last, seq)
		}
		return nil
	})
}

func TestApplyStopsAtARefusedStatementWithNothingOfItsGroupCommitted(t *testing.T) {
	src, dst, js := startRig(t)
	schema := []string{"CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))"}
	src.Exec(t, schema...)
	dst.Exec(t, schema...)
	dst.Exec(t, "INSERT INTO shop.t VALUES (50, 'in the way')")
	waitPublished(t, js, 2)

	// Pin the start after the schema, then write while the applier is
	// down: on its next start every change is there at once, and goes
	// to the target in batches.
	cfg := apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartNow}
	stop := runApplier(t, cfg)
	var pin uint64
	testenv.Eventually(t, 20*time.Second, func() error {
		return dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&pin)
	})
	stop()
	var ids []int
	for i := 1; i <= 40; i++ {
		ids = append(ids, i)
		src.Exec(t, fmt.Sprintf("INSERT INTO shop.t VALUES (%d, 'row %d')", i, i))
	}
	src.Exec(t, "BEGIN", "INSERT INTO shop.t VALUES (50, 'x')", "INSERT INTO shop.t VALUES (51, 'x')", "COMMIT")
	for i := 60; i <= 70; i++ {
		src.Exec(t, fmt.Sprintf("INSERT INTO shop.t VALUES (%d, 'row %d')", i, i))
	}
	waitPublished(t, js, pin+40+2+11)

	err := runUntilError(t, cfg)
	t.Log(err)
	if err == nil {
		t.Fatal("the applier went past a statement the target refuses")
	}
	for _, want := range []string{
		"Duplicate entry '50'",
		fmt.Sprintf("stream sequence %d ", pin+41),
		"INSERT INTO `shop`.`t` (`id`,`v`) VALUES (50,'x')",
		"mysql-bin.",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}

	// What the target holds is whole source transactions up to its
	// checkpoint: a prefix of the inserts, and nothing of the refused
	// transaction or after it.
	var cp uint64
	if err := dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&cp); err != nil {
		t.Fatal(err)
	}
	rows, err := dst.DB(t).Query("SELECT id FROM shop.t WHERE id <> 50 ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	applied := int(cp - pin)
	if applied > 40 || fmt.Sprint(got) != fmt.Sprint(ids[:applied]) {
		t.Fatalf("the target's checkpoint is %d transactions after the start but it holds ids %v", applied, got)
	}
}

func TestApplySaysTheTargetNeedsTheSchemaWhenItLacksIt(t *testing.T) {
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	js := testenv.StartJetStream(t)
	src.Exec(t, "CREATE DATABASE sbtest") // before capture started
	capt := testenv.NewCapture(testenv.CaptureConfig(src), js.Conn(t))
	capt.Start(t)
	src.Exec(t, "CREATE TABLE sbtest.t (id INT PRIMARY KEY)", "INSERT INTO sbtest.t VALUES (1)")
	waitPublished(t, js, 2)

	err := runUntilError(t, apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartBeginning})
	if err == nil || !strings.Contains(err.Error(), "Unknown database 'sbtest'") || !strings.Contains(err.Error(), "databus apply --from snapshot") {
		t.Fatalf("want an error naming the missing database and the snapshot start, got %v", err)
	}
}
