package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/internal/tlsconf"
	"github.com/databus/databus/sdk"
)

var applyOpts struct {
	target, targetFile, from, name, db, table string
	progress                                  time.Duration
}

func applyFlags(fs *flag.FlagSet) {
	fs.StringVar(&applyOpts.target, "target", "", "target server DSN, user:password@tcp(host:port)/; the process list shows it: prefer --target-file, apply.target in the config file or DATABUS_APPLY_TARGET")
	fs.StringVar(&applyOpts.targetFile, "target-file", "", "read the target server DSN from this file (its first line)")
	fs.StringVar(&applyOpts.from, "from", "beginning", "where to start when the target has no checkpoint: beginning, now, snapshot, a stream sequence, a commit time (2026-11-30T10:00:00Z), gtid:<set> or a binlog position (mysql-bin.000003:1234)")
	fs.StringVar(&applyOpts.name, "name", "apply", "name of this applier's checkpoint row in databus.apply_checkpoint on the target")
	fs.StringVar(&applyOpts.db, "db", "", "only these databases (comma-separated)")
	fs.StringVar(&applyOpts.table, "table", "", "only these tables, db.table (comma-separated)")
	fs.DurationVar(&applyOpts.progress, "progress", 10*time.Second, "how often to log progress and lag")
}

func cmdApply(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("apply takes no arguments, got %q", args)}
	}
	target, err := applyTarget(env.cfg.Apply.Target)
	if err != nil {
		return err
	}
	start, err := sdk.ParseStart(applyOpts.from)
	if err != nil {
		return usageError{"--from: " + err.Error()}
	}
	cfg := env.cfg
	a, err := apply.New(apply.Config{
		TargetDSN: target, Name: applyOpts.name,
		TLSMode: tlsconf.Mode(cfg.Apply.TLS.Mode), TLS: tlsFiles(cfg.Apply.TLS),
		NATSURL: natsURL(cfg), NATSOptions: natsOptions(cfg, "databus-apply"),
		Source: cfg.Source, Start: start,
		Databases: splitComma(applyOpts.db), Tables: splitComma(applyOpts.table),
		ProgressEvery: applyOpts.progress, Logger: env.log,
	})
	if err != nil {
		return usageError{err.Error()}
	}
	defer a.Close()
	listen := cfg.HTTP.Listen
	if !cfg.IsSet("http.listen") {
		listen = configs.DefaultApplyHTTPListen // beside databus run's
	}
	stopHTTP, err := serveHTTP(env, listen, ops.ApplyRegistry(version, cfg.Source, applyOpts.name, a.Progress),
		func() (bool, string) { return ops.ApplyReady(a.Progress()) })
	if err != nil {
		return err
	}
	defer stopHTTP()
	err = a.Run(ctx)
	p := a.Progress()
	env.log.Info("apply stopped", "transactions", p.Transactions, "events", p.Events, "stream_seq", p.Seq)
	return err
}

// applyTarget returns the target DSN: --target, else the first line of
// --target-file, else apply.target (config file or DATABUS_APPLY_TARGET).
func applyTarget(configured string) (string, error) {
	switch {
	case applyOpts.target != "" && applyOpts.targetFile != "":
		return "", usageError{"give the target with --target or --target-file, not both"}
	case applyOpts.target != "":
		return applyOpts.target, nil
	case applyOpts.targetFile != "":
		b, err := os.ReadFile(applyOpts.targetFile)
		if err != nil {
			return "", usageError{fmt.Sprintf("--target-file: %v", err)}
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if line = strings.TrimSpace(line); line == "" {
			return "", usageError{fmt.Sprintf("--target-file %s: the first line is empty; want user:password@tcp(host:port)/", applyOpts.targetFile)}
		}
		return line, nil
	case configured != "":
		return configured, nil
	}
	return "", usageError{"apply needs a target server, user:password@tcp(host:port)/: set apply.target in the config file or DATABUS_APPLY_TARGET, or give --target-file FILE or --target"}
}
