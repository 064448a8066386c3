package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/snapshot"
)

// cmdSnapshot takes a snapshot now. It asks the running `databus run` that
// captures the source to take it, through its admin service; when none
// answers (or the NATS user may not ask), it reads MySQL itself and stores
// the snapshot through the NATS server, where `databus run` must be
// capturing the source for the snapshot to be tied to a stream sequence.
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
	progress := progressPrinter(env.stderr, env.log)
	if snapshotOpts.local {
		return takeSnapshotHere(ctx, env, nc, progress)
	}
	var shown atomic.Bool
	r, err := ops.Snapshot(ctx, nc, cfg.Source, func(info ops.Info) {
		if p := info.Snapshot.Running; p != nil {
			shown.Store(true)
			progress(p.Progress())
		}
	})
	switch {
	case err == nil:
		d := r.Snapshot
		if shown.Load() {
			progress(snapshot.Progress{ID: d.ID, Phase: "done", Tables: d.Tables, TablesDone: d.Tables, Rows: d.Rows, RowsEstimate: d.Rows,
				Bytes: d.StoredBytes, Elapsed: time.Duration(d.Seconds * float64(time.Second))})
		}
		fmt.Fprintf(env.stdout, "snapshot %s (taken by %s): %d tables, %d rows, %s stored, consistent with %s (stream sequence %d)\n",
			d.ID, r.Node, d.Tables, d.Rows, byteSize(d.StoredBytes), d.Position, d.StreamSeq)
		return nil
	case errors.Is(err, ops.ErrNoNode), errors.Is(err, ops.ErrRefused):
		env.log.Info("no running databus run takes the snapshot: taking it in this process, reading MySQL at "+cfg.MySQL.Addr, "reason", err)
		return takeSnapshotHere(ctx, env, nc, progress)
	default:
		return err
	}
}

var snapshotOpts struct{ local bool }

func snapshotFlags(fs *flag.FlagSet) {
	fs.BoolVar(&snapshotOpts.local, "local", false, "take the snapshot in this process, reading MySQL itself, instead of asking the running databus run to take it")
}

// takeSnapshotHere takes a snapshot in this process, reading MySQL itself.
func takeSnapshotHere(ctx context.Context, env *cmdEnv, nc *nats.Conn, progress func(snapshot.Progress)) error {
	cfg := env.cfg
	opt := snapshotOptions(cfg)
	opt.Progress = progress
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
