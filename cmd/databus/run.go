package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/configs"
	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/tlsconf"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

var runOpts struct{ recover bool }

func runFlags(fs *flag.FlagSet) {
	fs.BoolVar(&runOpts.recover, "recover", false, "when the saved binlog position cannot be resumed (its binlog was purged, or the source is another server), "+
		"capture from the current position and take a new snapshot instead of stopping; changes in between are not in the stream")
}

func cmdRun(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("run takes no arguments, got %q", args)}
	}
	cfg := env.cfg
	if os.Getenv("GOGC") == "" {
		// The capture pipeline is bounded; trading some memory for less GC
		// work raises throughput on small machines.
		debug.SetGCPercent(400)
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return err
	}
	// Settled by the configuration alone: before the embedded server starts.
	opts, err := ownServerOptions(cfg, "databus-capture-"+cfg.Source)
	if err != nil {
		return err
	}
	url := cfg.NATS.URL
	if url == "" {
		ecfg := embedded.Config{
			Listen:   cfg.NATS.Listen,
			StoreDir: filepath.Join(cfg.DataDir, "nats"),
			Users:    embeddedUsers(cfg),
			Name:     "databus-" + cfg.Source, MaxStore: cfg.NATS.MaxStore,
		}
		if t := cfg.NATS.TLS; t.Cert != "" {
			var err error
			if ecfg.TLS, err = tlsconf.Server(tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key}, t.VerifyClients); err != nil {
				return &configs.ConfigError{Key: "nats.tls.cert", Value: t.Cert, Err: err}
			}
		}
		if len(ecfg.Users) == 0 { // one user who may do anything, or none
			ecfg.User, ecfg.Password, ecfg.Token = cfg.NATS.User, cfg.NATS.Password, cfg.NATS.Token
		}
		srv, err := embedded.Start(ecfg)
		if err != nil {
			return err
		}
		defer srv.Close() // last: after capture saved its checkpoint
		url = srv.ClientURL()
		env.log.Info("embedded NATS started", "url", url, "store", filepath.Join(cfg.DataDir, "nats"))
	}
	opts = append(opts,
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				env.log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { env.log.Info("NATS reconnected", "url", sdk.RedactURL(nc.ConnectedUrl())) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { env.log.Error("NATS error", "err", err) }),
	)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connecting to NATS at %s (nats.url): %w", sdk.RedactURL(url), err)
	}
	defer nc.Close()

	ccfg := captureConfig(cfg, env.log)
	// A recovery leaves a gap in the stream: a new snapshot lets consumers
	// start again after it.
	recovered := make(chan struct{}, 1)
	ccfg.Recover = runOpts.recover
	ccfg.OnRecover = func(error) {
		select {
		case recovered <- struct{}{}:
		default:
		}
	}
	c := capture.New(ccfg, nc)
	snapCtx, stopSnapshots := context.WithCancel(ctx)
	snapDone := make(chan struct{})
	sched := &snapshot.Schedule{
		Config: snapshotConfig(cfg), Options: snapshotOptions(cfg),
		OnStart: cfg.Snapshot.OnStart, Interval: cfg.Snapshot.Interval, Recovered: recovered,
		Logger: env.log.With("component", "snapshot"),
	}
	go func() {
		defer close(snapDone)
		sched.Run(snapCtx, nc)
	}()
	err = c.Run(ctx)
	stopSnapshots()
	<-snapDone
	if flushErr := nc.FlushTimeout(5 * time.Second); flushErr != nil && err == nil && !errors.Is(flushErr, nats.ErrConnectionClosed) {
		env.log.Warn("flushing NATS connection at shutdown", "err", flushErr)
	}
	if err != nil {
		return err
	}
	env.log.Info("stopped")
	return nil
}
