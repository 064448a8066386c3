package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/sdk"
)

var applyOpts struct {
	target, from, name, db, table string
	progress                      time.Duration
}

func applyFlags(fs *flag.FlagSet) {
	fs.StringVar(&applyOpts.target, "target", "", "target server DSN, user:password@tcp(host:port)/ (required)")
	fs.StringVar(&applyOpts.from, "from", "beginning", "where to start when the target has no checkpoint: beginning, now, or a stream sequence")
	fs.StringVar(&applyOpts.name, "name", "apply", "name of this applier's checkpoint row in databus.apply_checkpoint on the target")
	fs.StringVar(&applyOpts.db, "db", "", "only these databases (comma-separated)")
	fs.StringVar(&applyOpts.table, "table", "", "only these tables, db.table (comma-separated)")
	fs.DurationVar(&applyOpts.progress, "progress", 10*time.Second, "how often to log progress and lag")
}

func cmdApply(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("apply takes no arguments, got %q", args)}
	}
	if applyOpts.target == "" {
		return usageError{"apply needs --target user:password@tcp(host:port)/"}
	}
	start, err := sdk.ParseStart(applyOpts.from)
	if err != nil {
		return usageError{"--from: " + err.Error()}
	}
	cfg := env.cfg
	a, err := apply.New(apply.Config{
		TargetDSN: applyOpts.target, Name: applyOpts.name,
		NATSURL: natsURL(cfg), NATSOptions: natsOptions(cfg, "databus-apply"),
		Source: cfg.Source, Start: start,
		Databases: splitComma(applyOpts.db), Tables: splitComma(applyOpts.table),
		ProgressEvery: applyOpts.progress, Logger: env.log,
	})
	if err != nil {
		return usageError{err.Error()}
	}
	defer a.Close()
	err = a.Run(ctx)
	p := a.Progress()
	env.log.Info("apply stopped", "transactions", p.Transactions, "events", p.Events, "stream_seq", p.Seq)
	return err
}
