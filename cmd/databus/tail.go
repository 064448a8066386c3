package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/databus/databus/sdk"
)

var tailOpts struct {
	from, db, table, durable string
	count                    int
}

func tailFlags(fs *flag.FlagSet) {
	fs.StringVar(&tailOpts.from, "from", "now", "where a new consumer starts: beginning, now, snapshot (the latest snapshot, then the changes after it), a stream sequence, a commit time (2026-11-30T10:00:00Z), gtid:<set> or a binlog position (mysql-bin.000003:1234)")
	fs.StringVar(&tailOpts.db, "db", "", "only these databases (comma-separated)")
	fs.StringVar(&tailOpts.table, "table", "", "only these tables, db.table (comma-separated)")
	fs.StringVar(&tailOpts.durable, "durable", "", "durable consumer name: resume where the last tail with this name stopped")
	fs.IntVar(&tailOpts.count, "count", 0, "exit after this many events (0: run until interrupted)")
}

func cmdTail(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("tail takes no arguments, got %q", args)}
	}
	start, err := sdk.ParseStart(tailOpts.from)
	if err != nil {
		return usageError{"--from: " + err.Error()}
	}
	cfg := env.cfg
	c, err := sdk.Connect(ctx, sdk.Config{
		URL: natsURL(cfg), Options: natsOptions(cfg, "databus-tail"),
		Source: cfg.Source, Name: tailOpts.durable, Start: start,
		Databases: splitComma(tailOpts.db), Tables: splitComma(tailOpts.table),
	})
	if err != nil {
		return err
	}
	defer c.Close()
	enc := json.NewEncoder(env.stdout)
	enc.SetEscapeHTML(false)
	n := 0
	for m, err := range c.Events(ctx) {
		if errors.Is(err, sdk.ErrEventsLost) {
			return fmt.Errorf("%w (`databus tail --from snapshot` starts from the latest snapshot)", err)
		}
		if err != nil {
			return err
		}
		if err := enc.Encode(m.Event); err != nil {
			return fmt.Errorf("writing event: %w", err)
		}
		if err := m.Ack(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		n++
		if tailOpts.count > 0 && n >= tailOpts.count {
			return nil
		}
	}
	return nil
}
