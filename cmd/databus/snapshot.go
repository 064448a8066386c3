package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/databus/databus/snapshot"
)

// cmdSnapshot takes a snapshot now. It reads MySQL itself and stores the
// snapshot through the NATS server of the running `databus run`, which must
// be capturing the source for the snapshot to be tied to a stream sequence.
func cmdSnapshot(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("snapshot takes no arguments, got %q", args)}
	}
	cfg := env.cfg
	nc, err := connectRunning(cfg, "databus-snapshot")
	if err != nil {
		return err
	}
	defer nc.Close()
	opt := snapshotOptions(cfg)
	opt.Progress = progressPrinter(env.stderr, env.log)
	man, err := snapshot.Take(ctx, snapshotConfig(cfg), nc, opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "snapshot %s: %d tables, %d rows, %s stored, consistent with %s (stream sequence %d)\n",
		man.ID, len(man.Tables), man.Rows, byteSize(man.StoredBytes), man.Position, man.StreamSeq)
	return nil
}

// progressPrinter shows snapshot progress as a redrawn bar on a terminal and
// as log lines otherwise.
func progressPrinter(w io.Writer, log *slog.Logger) func(snapshot.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return func(p snapshot.Progress) {
		rate := float64(p.Rows) / max(p.Elapsed.Seconds(), 0.001)
		eta := "?"
		if p.RowsEstimate > p.Rows && rate > 0 {
			eta = (time.Duration(float64(p.RowsEstimate-p.Rows)/rate) * time.Second).Round(time.Second).String()
		}
		if !tty {
			log.Info("snapshot progress", "id", p.ID, "phase", p.Phase, "tables", fmt.Sprintf("%d/%d", p.TablesDone, p.Tables),
				"table", p.Table, "rows", p.Rows, "bytes", p.Bytes, "rows_per_s", int(rate), "eta", eta)
			return
		}
		frac := 0.0
		if p.RowsEstimate > 0 {
			frac = min(float64(p.Rows)/float64(p.RowsEstimate), 1)
		}
		if p.Phase != "reading" {
			frac = 1
		}
		const width = 30
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
		fmt.Fprintf(w, "\r[%s] %s tables %d/%d  rows %d  %s  %.0f rows/s  ETA %s   ", bar, p.Phase, p.TablesDone, p.Tables, p.Rows, byteSize(p.Bytes), rate, eta)
		if p.Phase == "done" {
			fmt.Fprintln(w)
		}
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
