package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/configs"
	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/filter"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/internal/tlsconf"
	"github.com/databus/databus/snapshot"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2
	exitSource  = 3
)

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type command struct {
	name, summary string
	run           func(ctx context.Context, env *cmdEnv, args []string) error
	flags         func(fs *flag.FlagSet)
}

var commands []command

func init() {
	commands = []command{
		{name: "run", summary: "capture the binlog into JetStream (embedded NATS unless nats.url is set)", run: cmdRun},
		{name: "check", summary: "run the start-up checks without capturing and print what to fix", run: cmdCheck},
		{name: "snapshot", summary: "take a consistent snapshot now, with progress (needs `databus run` capturing)", run: cmdSnapshot},
		{name: "tail", summary: "print events as JSON lines (--from beginning|now|snapshot, --db, --table)", run: cmdTail},
		{name: "apply", summary: "mirror the source into another MySQL/MariaDB server (--target DSN), exactly once", run: cmdApply},
		{name: "status", summary: "print the capture checkpoint and the stream's state", run: cmdStatus},
		{name: "version", summary: "print the version", run: cmdVersion},
	}
}

// cmdEnv is what every command gets: its loaded config, output and logger.
type cmdEnv struct {
	cfg    configs.Config
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// level is log's level, which SIGHUP and the admin service change.
	level *slog.LevelVar
	fs    *flag.FlagSet
	// reload loads the configuration again, as at start.
	reload func() (configs.Config, error)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: databus <command> [--config FILE] [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'databus <command> --help' for the flags of a command.")
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "databus: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitConfig
	}
	fs := flag.NewFlagSet("databus "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML config file (see configs/databus.example.yaml)")
	var extra []func(*flag.FlagSet)
	if f := cmdFlags[cmd.name]; f != nil {
		extra = append(extra, f)
	}
	for _, f := range extra {
		f(fs)
	}
	setFlags := configs.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: databus %s [--config FILE] [flags]\n\n%s\n\nflags:\n", cmd.name, cmd.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	flags := setFlags()
	reload := func() (configs.Config, error) { return configs.Load(*configFile, os.Environ(), flags) }
	cfg, err := reload()
	if err != nil {
		fmt.Fprintf(stderr, "databus: %v\n", err)
		return exitConfig
	}
	log, level := newLogger(cfg.Log, stderr)
	env := &cmdEnv{cfg: cfg, stdout: stdout, stderr: stderr, log: log, level: level, fs: fs, reload: reload}

	var onHUP func()
	if cmd.name == "run" || cmd.name == "apply" {
		onHUP = env.reloadSettings
	}
	ctx, stop := signalContext(stderr, onHUP)
	defer stop()
	err = cmd.run(ctx, env, fs.Args())
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "databus %s: %v\n", cmd.name, err)
	var ue usageError
	var ce *configs.ConfigError
	switch {
	case errors.As(err, &ue), errors.As(err, &ce), errors.Is(err, capture.ErrNATSPermission), errors.Is(err, bus.ErrReplicasUnsupported),
		errors.Is(err, capture.ErrBadStart):
		return exitConfig
	case errors.Is(err, capture.ErrAccessDenied), errors.Is(err, capture.ErrSourceSettings), errors.Is(err, capture.ErrServerChanged),
		errors.Is(err, capture.ErrBinlogPurged):
		return exitSource
	}
	return exitRuntime
}

// cmdFlags holds the command-specific flags, registered before the config
// key flags.
var cmdFlags = map[string]func(*flag.FlagSet){
	"run":      runFlags,
	"snapshot": snapshotFlags,
	"tail":     tailFlags,
	"apply":    applyFlags,
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one
// exits at once. With onHUP set, SIGHUP calls it instead of killing the
// process.
func signalContext(stderr io.Writer, onHUP func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	if onHUP != nil {
		signal.Notify(hup, syscall.SIGHUP)
	}
	go func() {
		stopping := false
		for {
			select {
			case <-hup:
				onHUP()
				continue
			case <-ch:
			case <-ctx.Done():
				return
			}
			if stopping {
				fmt.Fprintln(stderr, "databus: second signal, exiting now")
				os.Exit(exitRuntime)
			}
			stopping = true
			cancel()
		}
	}()
	return ctx, func() { signal.Stop(ch); signal.Stop(hup); cancel() }
}

// reloadableKeys are the settings SIGHUP changes in a running process;
// the others need a restart.
var reloadableKeys = []string{"log.level"}

// reloadSettings reads the configuration again (SIGHUP) and applies what
// can change at run time: log.level. It logs the changed keys that need
// a restart, and keeps the running settings when the configuration is
// bad.
func (env *cmdEnv) reloadSettings() {
	cfg, err := env.reload()
	if err != nil {
		env.log.Error("SIGHUP: the configuration is not valid, nothing changed", "err", err)
		return
	}
	level, _ := ops.ParseLevel(cfg.Log.Level) // valid: Load checked it
	prev := env.level.Level()
	// Logged at the lower of the two levels, so that it shows.
	env.level.Set(min(level, prev))
	env.log.Info("SIGHUP: configuration read again", "log.level", cfg.Log.Level, "previous_level", strings.ToLower(prev.String()))
	env.level.Set(level)
	if changed := configs.Changed(env.cfg, cfg); len(changed) > 0 {
		var restart []string
		for _, k := range changed {
			if !slices.Contains(reloadableKeys, k) {
				restart = append(restart, k)
			}
		}
		if len(restart) > 0 {
			env.log.Warn("SIGHUP: these settings changed but take effect only after a restart", "keys", restart)
		}
	}
}

// newLogger returns the logger of cfg, and its level to change it later.
func newLogger(cfg configs.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	if l, err := ops.ParseLevel(cfg.Level); err == nil {
		level.Set(l)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// natsURL is where commands reach the server: nats.url, or the embedded
// server's listen address.
func natsURL(cfg configs.Config) string {
	if cfg.NATS.URL != "" {
		return cfg.NATS.URL
	}
	return "nats://" + cfg.NATS.Listen
}

// tlsFiles are the files of a MySQL TLS setting.
func tlsFiles(t configs.MySQLTLS) tlsconf.Files {
	return tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key}
}

// natsOptions are the client options for the configured auth and TLS.
func natsOptions(cfg configs.Config, name string) []nats.Option {
	// A server that hangs (frozen, partitioned) is left for another of
	// nats.url's within 15s, not after nats.go's default of 4 minutes.
	opts := []nats.Option{nats.Name(name), nats.PingInterval(5 * time.Second), nats.MaxPingsOutstanding(3)}
	t := cfg.NATS.TLS
	tc, err := tlsconf.Client(tlsconf.Files{CA: t.CA, Cert: t.ClientCert, Key: t.ClientKey})
	switch {
	case err != nil:
		opts = append(opts, func(*nats.Options) error { return fmt.Errorf("nats.tls: %w", err) })
	case tc != nil:
		opts = append(opts, nats.Secure(tc))
	}
	switch {
	case cfg.NATS.Creds != "":
		opts = append(opts, nats.UserCredentials(cfg.NATS.Creds))
	case cfg.NATS.Token != "":
		opts = append(opts, nats.Token(cfg.NATS.Token))
	case cfg.NATS.NkeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NATS.NkeySeed)
		if err != nil {
			opt = func(*nats.Options) error { return fmt.Errorf("nats.nkey_seed: %w", err) }
		}
		opts = append(opts, opt)
	case cfg.NATS.User != "":
		opts = append(opts, nats.UserInfo(cfg.NATS.User, cfg.NATS.Password))
	}
	return opts
}

// clientCredentials reports whether this process has credentials of its
// own (nats.user, nats.token, nats.creds or nats.nkey_seed).
func clientCredentials(cfg configs.Config) bool {
	return cfg.NATS.User != "" || cfg.NATS.Token != "" || cfg.NATS.Creds != "" || cfg.NATS.NkeySeed != ""
}

// embeddedUsers are the users with roles of the embedded server.
func embeddedUsers(cfg configs.Config) []embedded.User {
	var out []embedded.User
	for role, u := range map[embedded.Role]configs.RoleUser{
		embedded.RoleAdmin: cfg.NATS.Auth.Admin, embedded.RoleCapture: cfg.NATS.Auth.Capture, embedded.RoleReader: cfg.NATS.Auth.Reader,
	} {
		if u.Defined() {
			out = append(out, embedded.User{Name: u.User, Password: u.Password, Nkey: u.Nkey, Role: role})
		}
	}
	return out
}

// ownServerOptions are the options `databus run` connects to its embedded
// server with: its own credentials when set, else the capture user's (or
// the admin's) password.
func ownServerOptions(cfg configs.Config, name string) ([]nats.Option, error) {
	opts := natsOptions(cfg, name)
	if clientCredentials(cfg) || !cfg.NATS.Auth.Roles() {
		return opts, nil
	}
	for _, u := range []configs.RoleUser{cfg.NATS.Auth.Capture, cfg.NATS.Auth.Admin} {
		if u.Password != "" {
			return append(opts, nats.UserInfo(u.User, u.Password)), nil
		}
	}
	return nil, &configs.ConfigError{Key: "nats.nkey_seed", Err: errors.New("the embedded server's capture user has an nkey: give databus run its seed in nats.nkey_seed (or a capture password)")}
}

// checkDataDir makes sure data_dir exists and is writable.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return &configs.ConfigError{Key: "data_dir", Value: dir, Err: fmt.Errorf("cannot create it: %w", err)}
	}
	probe := filepath.Join(dir, ".databus-write-test")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		return &configs.ConfigError{Key: "data_dir", Value: dir, Err: fmt.Errorf("not writable (fix its permissions or choose another data_dir): %w", err)}
	}
	return os.Remove(probe)
}

// captureConfig, snapshotConfig and snapshotOptions turn the configuration
// into each component's own.
func captureConfig(cfg configs.Config, log *slog.Logger) capture.Config {
	return capture.Config{
		Source:   cfg.Source,
		MySQL:    mysqlConfig(cfg),
		Filter:   captureFilter(cfg),
		Stream:   streamConfig(cfg),
		RetryMax: cfg.MySQL.RetryMax,
		Start:    cfg.Capture.StartPoint(),
		Logger:   log,
	}
}

func snapshotConfig(cfg configs.Config) snapshot.Config {
	return snapshot.Config{Source: cfg.Source, MySQL: mysqlConfig(cfg), Filter: captureFilter(cfg), Stream: streamConfig(cfg)}
}

func snapshotOptions(cfg configs.Config) snapshot.Options {
	return snapshot.Options{Keep: cfg.Snapshot.Keep, Parallel: cfg.Snapshot.Parallel}
}

func mysqlConfig(cfg configs.Config) mysqlsrc.Config {
	return mysqlsrc.Config{
		Addr: cfg.MySQL.Addr, User: cfg.MySQL.User, Password: cfg.MySQL.Password,
		ServerID: cfg.MySQL.ServerID, ConnectTimeout: cfg.MySQL.ConnectTimeout,
		TLSMode: tlsconf.Mode(cfg.MySQL.TLS.Mode), TLS: tlsFiles(cfg.MySQL.TLS),
	}
}

func captureFilter(cfg configs.Config) filter.Filter {
	return filter.Filter{Databases: cfg.Capture.Databases, Tables: cfg.Capture.Tables, Exclude: cfg.Capture.Exclude}
}

func streamConfig(cfg configs.Config) bus.StreamConfig {
	return bus.StreamConfig{
		Replicas: cfg.NATS.Stream.Replicas, MaxAge: cfg.NATS.Stream.MaxAge,
		MaxBytes: cfg.NATS.Stream.MaxBytes, DuplicateWindow: cfg.NATS.Stream.DuplicateWindow,
		AtomicTransactions: cfg.Capture.AtomicTransactions,
	}
}

func splitComma(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
