package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/configs"
	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/lease"
	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/internal/tlsconf"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

var runOpts struct{ recover bool }

func runFlags(fs *flag.FlagSet) {
	fs.BoolVar(&runOpts.recover, "recover", false, "when the saved binlog position cannot be resumed (its binlog was purged, or the source is another server), "+
		"capture from the current position and take a new snapshot instead of stopping; changes in between are not in the stream. "+
		"When capture.start differs from the start the checkpoint was made under, capture again from capture.start")
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
	node := ops.NewNode(cfg.Source, cfg.NodeName(), version, env.level, env.log)
	stopHTTP, err := serveHTTP(env, cfg.HTTP.Listen, node.Registry(), node.Ready)
	if err != nil {
		return err
	}
	defer stopHTTP()
	url := cfg.NATS.URL
	embeddedUp := false
	if url == "" {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return err
		}
		defer srv.Close() // last: after capture saved its checkpoint
		url, embeddedUp = srv.ClientURL(), true
		env.log.Info("embedded NATS started", "url", url, "store", filepath.Join(cfg.DataDir, "nats"), "server_name", cfg.EmbeddedServerName(),
			"cluster", cfg.NATS.Cluster.Listen, "monitor", srv.MonitorURL())
	}
	var connectErr atomic.Pointer[error]
	opts = append(opts,
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				connectErr.Store(&err)
			}
		}),
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
	node.Connected(nc)
	if !waitConnected(ctx, env, nc, node, &connectErr) {
		return nil
	}

	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	// The state bucket holds the capture lease: it must exist before
	// any node can lead. On a cluster this waits for its leaders.
	node.Waiting("creating the stream and state bucket on NATS (a cluster waits for its leaders)")
	_, kv, err := bus.Ensure(ctx, js, cfg.Source, streamConfig(cfg), env.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, bus.ErrReplicasUnsupported) {
			return &configs.ConfigError{Key: "nats.stream.replicas", Value: strconv.Itoa(cfg.NATS.Stream.Replicas), Err: err}
		}
		return err
	}
	node.Waiting("")
	admin, err := ops.StartAdmin(nc, node)
	if err != nil {
		return err
	}
	defer func() { _ = admin.Stop() }()
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	go node.Run(nodeCtx)
	err = elect(ctx, env, nc, kv, node)
	if stop := (*captureStopped)(nil); errors.As(err, &stop) {
		err = stop.err
		node.Stopped(err)
		recordStop(kv, cfg.NodeName(), stop)
		if embeddedUp {
			// Consumers keep the stream: only capture stopped.
			env.log.Error("capture stopped; the embedded NATS server stays up for consumers. Fix the cause and restart `databus run` "+
				"(SIGTERM stops it); `databus status` shows the error", "err", err, "position", stop.pos)
			<-ctx.Done()
		}
	}
	if flushErr := nc.FlushTimeout(5 * time.Second); flushErr != nil && err == nil && !errors.Is(flushErr, nats.ErrConnectionClosed) {
		env.log.Warn("flushing NATS connection at shutdown", "err", flushErr)
	}
	if err != nil {
		return err
	}
	env.log.Info("stopped")
	return nil
}

// waitConnected waits until nc is connected to NATS, logging what it waits
// for (the last connection error) every 10 seconds. It returns false when
// ctx ends first.
func waitConnected(ctx context.Context, env *cmdEnv, nc *nats.Conn, node *ops.Node, lastErr *atomic.Pointer[error]) bool {
	logged := time.Now()
	for !nc.IsConnected() {
		what := "waiting for NATS at " + sdk.RedactURL(natsURL(env.cfg)) + " (nats.url)"
		if e := lastErr.Load(); e != nil {
			what += ": " + (*e).Error()
		}
		node.Waiting(what)
		if time.Since(logged) >= 10*time.Second {
			env.log.Warn(what + "; databus run keeps trying (SIGTERM stops it)")
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
	return true
}

// serveHTTP starts the metrics and health endpoint on listen, unless it is
// empty, and returns the function that stops it.
func serveHTTP(env *cmdEnv, listen string, reg *prometheus.Registry, ready func() (bool, string)) (func(), error) {
	if listen == "" {
		return func() {}, nil
	}
	ep := &ops.Endpoint{Listen: listen, Reg: reg, Ready: ready, Log: env.log}
	if err := ep.Start(); err != nil {
		return nil, fmt.Errorf("the metrics and health endpoint cannot listen on %s (http.listen): %w; "+
			"stop the other process or set http.listen (DATABUS_HTTP_LISTEN) to a free address, or to \"\" to turn it off. "+
			"databus run and databus apply on one machine each need their own", listen, err)
	}
	env.log.Info("metrics and health endpoint", "url", "http://"+ep.Addr()+"/metrics")
	return ep.Close, nil
}

// startEmbedded starts the embedded NATS server of the configuration.
func startEmbedded(cfg configs.Config) (*embedded.Server, error) {
	ecfg := embedded.Config{
		Listen:   cfg.NATS.Listen,
		StoreDir: filepath.Join(cfg.DataDir, "nats"),
		Users:    embeddedUsers(cfg),
		Name:     cfg.EmbeddedServerName(), MaxStore: cfg.NATS.MaxStore,
		MonitorListen: cfg.NATS.MonitorListen,
	}
	if cl := cfg.NATS.Cluster; cl.Enabled() {
		ecfg.Cluster = &embedded.Cluster{Name: cfg.ClusterName(), Listen: cl.Listen, Routes: cl.Routes, User: cl.User, Password: cl.Password}
	}
	if t := cfg.NATS.TLS; t.Cert != "" {
		var err error
		if ecfg.TLS, err = tlsconf.Server(tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key}, t.VerifyClients); err != nil {
			return nil, &configs.ConfigError{Key: "nats.tls.cert", Value: t.Cert, Err: err}
		}
	}
	if len(ecfg.Users) == 0 { // one user who may do anything, or none
		ecfg.User, ecfg.Password, ecfg.Token = cfg.NATS.User, cfg.NATS.Password, cfg.NATS.Token
	}
	srv, err := embedded.Start(ecfg)
	if errors.Is(err, fs.ErrPermission) {
		// The store is data_dir's: as a data_dir that cannot be written.
		return nil, &configs.ConfigError{Key: "data_dir", Value: cfg.DataDir, Err: err}
	}
	return srv, err
}

// elect announces this node in the state bucket kv and campaigns for the
// capture lease, capturing while it holds it, until ctx ends or capture
// fails.
func elect(ctx context.Context, env *cmdEnv, nc *nats.Conn, kv jetstream.KeyValue, live *ops.Node) error {
	cfg := env.cfg
	node := &nodeState{kv: kv, name: cfg.NodeName(), nats: natsServerName(nc), every: cfg.Capture.Lease, changed: make(chan struct{}, 1), live: live}
	// The first announcement is a write to the state bucket: a user who
	// may not write it is refused now, not after standing by for ever.
	before := nc.LastError()
	if err := node.put(ctx); err != nil {
		if perr := nc.LastError(); perr != before && errors.Is(perr, nats.ErrPermissionViolation) {
			return capture.PermissionError(perr, err)
		}
		env.log.Warn("announcing this node in the state bucket", "err", err)
	}
	elector := lease.New(lease.Config{
		Key: bus.LeaderKey, Node: node.name, TTL: cfg.Capture.Lease, Logger: env.log.With("component", "lease", "node", node.name),
		OnChange: node.setLeading, Conn: nc,
	}, kv)
	annCtx, stopAnnouncing := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { node.announce(annCtx) })
	defer wg.Wait()
	defer stopAnnouncing()
	return elector.Run(ctx, func(ctx context.Context, l *lease.Lease) error {
		return lead(ctx, env, nc, kv, l, live)
	})
}

// captureStopped is the error of a capture that stopped after it had read
// the binlog: something it read stops it (a value it cannot represent, a
// foreign message), not its configuration.
type captureStopped struct {
	err error
	pos sdk.Position
}

func (e *captureStopped) Error() string { return e.err.Error() }
func (e *captureStopped) Unwrap() error { return e.err }

// recordStop writes why capture stopped under [bus.CaptureStopKey], for
// `databus status`.
func recordStop(kv jetstream.KeyValue, node string, stop *captureStopped) {
	b, _ := json.Marshal(bus.CaptureStop{Node: node, Error: stop.err.Error(), At: time.Now().UTC(), Position: stop.pos.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = kv.Put(ctx, bus.CaptureStopKey, b) // best effort: the log has it too
}

// lead is the leader's work while it holds lease l: capture, and the
// snapshot schedule beside it. It returns [lease.ErrLost] when capture
// finds that another node took over.
func lead(ctx context.Context, env *cmdEnv, nc *nats.Conn, kv jetstream.KeyValue, l *lease.Lease, node *ops.Node) error {
	cfg := env.cfg
	// A new capture: the stop another one recorded is history.
	if err := kv.Delete(ctx, bus.CaptureStopKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		env.log.Warn("clearing the recorded capture stop", "err", err)
	}
	ccfg := captureConfig(cfg, env.log)
	ccfg.Lease = l
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
	// Before capture starts: a leader moving is a short pause for its
	// stream's clients.
	leaders := newLeaderMover(env, nc)
	leaders.move(ctx)
	onStart := cfg.Snapshot.OnStart
	if onStart && ccfg.Start.Explicit() {
		// The user chose where the stream begins (where a restored backup
		// ends, another tool's position): consumers start from there, and
		// a snapshot of now would wait for capture to catch up.
		env.log.Info("capture.start is set: no first snapshot is taken (databus snapshot takes one)", "start", ccfg.Start.String())
		onStart = false
	}
	sched := &snapshot.Schedule{
		Config: snapshotConfig(cfg), Options: snapshotOptions(cfg),
		OnStart: onStart, Interval: cfg.Snapshot.Interval, Recovered: recovered,
		Logger: env.log.With("component", "snapshot"), Observe: node.ObserveSnapshot,
	}
	defer node.Lead(ctx, c, sched)()
	besideCtx, stopBeside := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sched.Run(besideCtx, nc) })
	wg.Go(func() { leaders.keep(besideCtx) })
	err := c.Run(ctx)
	stopBeside()
	wg.Wait()
	if errors.Is(err, capture.ErrLeaseLost) {
		return fmt.Errorf("%w: %w", lease.ErrLost, err)
	}
	if st := c.Status(); err != nil && st.Started {
		return &captureStopped{err: err, pos: st.Position}
	}
	return err
}

// leaderMover keeps the cluster leadership of the source's stream, state
// bucket and snapshot bucket off the NATS server this node uses (see
// [bus.MoveLeaders]).
type leaderMover struct {
	env     *cmdEnv
	nc      *nats.Conn
	js      jetstream.JetStream
	streams []string
}

func newLeaderMover(env *cmdEnv, nc *nats.Conn) *leaderMover {
	m := &leaderMover{env: env, nc: nc}
	if env.cfg.NATS.Stream.Replicas < 2 {
		return m // nothing to move
	}
	m.js, _ = jetstream.New(nc)
	events, state, snapshots := bus.Streams(env.cfg.Source)
	m.streams = []string{events, state, snapshots}
	return m
}

// move moves the leaders once.
func (m *leaderMover) move(ctx context.Context) {
	if m.js == nil {
		return
	}
	// Short: a stream without a leader (an election) is not moved, and
	// capture waits for none of this.
	mctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	moved, err := bus.MoveLeaders(mctx, m.js, m.nc.ConnectedServerName(), m.streams...)
	switch {
	case err != nil && ctx.Err() == nil:
		m.env.log.Warn("moving stream leaders off this node's NATS server", "err", err)
	case len(moved) > 0:
		m.env.log.Info("moved stream leaders off this node's NATS server, so that a standby finds them alive if this node dies", "streams", moved)
	}
}

// keep moves the leaders every 2 seconds until ctx ends.
func (m *leaderMover) keep(ctx context.Context) {
	if m.js == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		m.move(ctx)
	}
}

// natsServerName is the name of the NATS server nc is connected to.
func natsServerName(nc *nats.Conn) string {
	if name := nc.ConnectedServerName(); name != "" {
		return name
	}
	return sdk.RedactURL(nc.ConnectedUrl())
}

// nodeState announces this node and its role under [bus.NodeKey] while it
// runs, for `databus status`.
type nodeState struct {
	kv      jetstream.KeyValue
	name    string
	nats    string
	every   time.Duration
	leading atomic.Bool
	changed chan struct{}
	live    *ops.Node
}

func (n *nodeState) setLeading(on bool) {
	n.leading.Store(on)
	n.live.SetLeading(on)
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// put writes the node's record with its role now.
func (n *nodeState) put(ctx context.Context) error {
	role := "standby"
	if n.leading.Load() {
		role = "leader"
	}
	b, _ := json.Marshal(bus.Node{Name: n.name, Role: role, NATS: n.nats, Seen: time.Now().UTC()})
	ctx, cancel := context.WithTimeout(ctx, n.every)
	defer cancel()
	_, err := n.kv.Put(ctx, bus.NodeKey(n.name), b)
	return err
}

// announce writes the node's record every n.every and when its role
// changes, until ctx ends; then it removes it.
func (n *nodeState) announce(ctx context.Context) {
	t := time.NewTicker(n.every)
	defer t.Stop()
	for {
		_ = n.put(ctx) // best effort: status only
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = n.kv.Delete(dctx, bus.NodeKey(n.name))
			cancel()
			return
		case <-t.C:
		case <-n.changed:
		}
	}
}
