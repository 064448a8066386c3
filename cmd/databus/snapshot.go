package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/configs"
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
	show := progressPrinter(env.stderr, env.log)
	man, err := capture.TakeSnapshot(ctx, captureConfig(cfg, env.log), nc, capture.SnapshotOptions{Keep: cfg.Snapshot.Keep, Parallel: cfg.Snapshot.Parallel, Progress: show})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "snapshot %s: %d tables, %d rows, %s stored, consistent with %s (stream sequence %d)\n",
		man.ID, len(man.Tables), man.Rows, byteSize(man.StoredBytes), man.Position, man.StreamSeq)
	return nil
}

// progressPrinter shows snapshot progress as a redrawn bar on a terminal and
// as log lines otherwise.
func progressPrinter(w io.Writer, log *slog.Logger) func(capture.SnapshotProgress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return func(p capture.SnapshotProgress) {
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

// snapshots runs in `databus run`: a first snapshot when none exists, then
// one every interval. A snapshot that fails is logged and retried at the
// next occasion; capture goes on.
func snapshots(ctx context.Context, cfg configs.Config, log *slog.Logger, nc *nats.Conn, recovered <-chan struct{}) {
	take := func() {
		log.Info("snapshot starting")
		man, err := capture.TakeSnapshot(ctx, captureConfig(cfg, log), nc, capture.SnapshotOptions{Keep: cfg.Snapshot.Keep, Parallel: cfg.Snapshot.Parallel,
			Progress: func(p capture.SnapshotProgress) {
				if p.Phase == "reading" {
					log.Info("snapshot progress", "id", p.ID, "tables", fmt.Sprintf("%d/%d", p.TablesDone, p.Tables), "rows", p.Rows)
				}
			}})
		switch {
		case err == nil:
			log.Info("snapshot complete", "id", man.ID, "tables", len(man.Tables), "rows", man.Rows,
				"stored", byteSize(man.StoredBytes), "pos", man.Position.String(), "stream_seq", man.StreamSeq)
		case ctx.Err() != nil:
		case errors.Is(err, capture.ErrSnapshotRunning):
			log.Info("snapshot skipped", "reason", err)
		default:
			log.Warn("snapshot failed", "err", err)
		}
	}
	if cfg.Snapshot.OnStart {
		exists, err := capture.HasSnapshot(ctx, nc, cfg.Source)
		if err != nil && ctx.Err() == nil {
			log.Warn("looking for an existing snapshot", "err", err)
		}
		if err == nil && !exists {
			take()
		}
	}
	var tick <-chan time.Time
	if cfg.Snapshot.Interval > 0 {
		t := time.NewTicker(cfg.Snapshot.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			take()
		case <-recovered:
			log.Warn("taking a new snapshot: capture recovered from a checkpoint it could not resume")
			take()
		}
	}
}
