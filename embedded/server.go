package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrAddrInUse is wrapped by [Start]'s error when the listen address is taken.
var ErrAddrInUse = errors.New("address already in use")

// Config configures the embedded server.
type Config struct {
	// Listen is the client address, host:port. Port 0 picks a free port.
	Listen string
	// StoreDir is the JetStream store directory.
	StoreDir string
	// User/Password or Token, when set, are required from clients.
	User, Password, Token string
	// Users, when set, are the only users, each with its role; User,
	// Password and Token must then be empty.
	Users []User
	// TLS, when set, is required of every client; with ClientAuth
	// tls.RequireAndVerifyClientCert, so is a client certificate.
	TLS *tls.Config
	// Name is the server name; "databus" when empty.
	Name string
	// MaxStore caps the JetStream file storage of the server's clients in
	// bytes ([Server.LimitStore]); 0 leaves it to the disk.
	MaxStore int64
	// Cluster, when set, makes the server a member of a JetStream cluster.
	Cluster *Cluster
	// MonitorListen, when set, is the host:port of nats-server's HTTP
	// monitoring endpoint (/varz, /jsz, /connz, /healthz), which the NATS
	// Prometheus exporter and Grafana dashboards read. Port 0 picks a
	// free port; [Server.MonitorURL] tells which.
	MonitorListen string
}

// Cluster configures the server's membership of a JetStream cluster.
type Cluster struct {
	// Name is the cluster's name, the same on every member.
	Name string
	// Listen is the host:port the server's routes listen on.
	Listen string
	// Routes are the members' route URLs (nats-route://host:port); the
	// server's own may be among them.
	Routes []string
	// User and Password, when set, are required of routes, and given to
	// the routes this server opens.
	User, Password string
}

// Server is a running embedded NATS server.
type Server struct {
	ns   *server.Server
	once sync.Once
}

// Start starts the server and waits up to 10 seconds until it is ready.
// Its error wraps [ErrAddrInUse] when an address is taken, and the OS
// error (such as [fs.ErrPermission]) when the store directory cannot be
// written; when nats-server itself gives up, it carries nats-server's last
// errors.
func Start(cfg Config) (*Server, error) {
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS: %w", err)
	}
	log := &errorLog{}
	ns.SetLoggerV2(log, false, false, false)
	go ns.Start()
	if err := waitReady(ns, log, 10*time.Second); err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s %w", cfg.Listen, err)
	}
	srv := &Server{ns: ns}
	if cfg.MaxStore > 0 {
		if err := srv.LimitStore(cfg.MaxStore); err != nil {
			srv.Close()
			return nil, fmt.Errorf("limiting JetStream storage to %d bytes (nats.max_store): %w", cfg.MaxStore, err)
		}
	}
	return srv, nil
}

// options checks cfg and turns it into nats-server's options.
func options(cfg Config) (*server.Options, error) {
	host, port, err := freeAddr(cfg.Listen, "nats.listen")
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if err := checkStore(cfg.StoreDir); err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = "databus"
	}
	opts := &server.Options{
		ServerName:    name,
		Host:          host,
		Port:          port,
		JetStream:     true,
		StoreDir:      cfg.StoreDir,
		NoSigs:        true,
		NoLog:         true,
		Username:      cfg.User,
		Password:      cfg.Password,
		Authorization: cfg.Token,
		MaxPayload:    8 << 20,
	}
	if cfg.MonitorListen != "" {
		if opts.HTTPHost, opts.HTTPPort, err = freeAddr(cfg.MonitorListen, "nats.monitor_listen"); err != nil {
			return nil, err
		}
		if opts.HTTPPort == 0 {
			opts.HTTPPort = server.RANDOM_PORT
		}
	}
	if cfg.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, cfg.TLS, 5
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	if len(cfg.Users) > 0 {
		if cfg.User != "" || cfg.Token != "" {
			return nil, fmt.Errorf("embedded NATS: users with roles exclude a single user or token")
		}
		if err := applyUsers(opts, cfg.Users); err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
	}
	if cfg.Cluster != nil {
		if err := applyCluster(opts, *cfg.Cluster); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// waitReady waits up to d until ns accepts clients. nats-server does not
// return the error that stops it starting, it only logs it: waitReady
// returns as soon as log has a fatal error, and names log's last errors
// when d runs out.
func waitReady(ns *server.Server, log *errorLog, d time.Duration) error {
	for end := time.Now().Add(d); time.Now().Before(end); {
		if ns.ReadyForConnections(100 * time.Millisecond) {
			return nil
		}
		if msg := log.fatal(); msg != "" {
			return fmt.Errorf("failed to start: %s", msg)
		}
	}
	if errs := log.last(); errs != "" {
		return fmt.Errorf("did not become ready within %s: %s", d, errs)
	}
	return fmt.Errorf("did not become ready within %s", d)
}

// checkStore creates the store directory dir if needed and checks that
// files can be created in it, and in the jetstream directory nats-server
// keeps in it if there is one already. nats-server only logs a store it
// cannot write, and never becomes ready; checking first gives the caller
// an error it can explain.
func checkStore(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return storeError("create", dir, err)
	}
	dirs := []string{dir}
	if js := filepath.Join(dir, server.JetStreamStoreDir); exists(js) {
		dirs = append(dirs, js)
	}
	for _, d := range dirs {
		f, err := os.CreateTemp(d, ".databus-write-test-*")
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is the test file's, not d
			}
			return storeError("write to", d, err)
		}
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	return nil
}

// exists reports whether something, even a dangling link, is at path.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// storeError explains that the embedded server cannot do verb to its
// store directory dir, wrapping err.
func storeError(verb, dir string, err error) error {
	fix := "choose another data_dir"
	if errors.Is(err, fs.ErrPermission) {
		fix = "fix its permissions or " + fix
	}
	return fmt.Errorf("embedded NATS cannot %s its JetStream store %s (%w): %s", verb, dir, err, fix)
}

// freeAddr splits addr, the value of key, into host and port, and checks
// that nothing listens on it (port 0 picks a free port later).
// nats-server logs and exits on a taken port; checking first gives the
// caller an error it can explain.
func freeAddr(addr, key string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: want host:port: %w", key, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: bad port: %w", key, addr, err)
	}
	if port != 0 {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", 0, fmt.Errorf("embedded NATS cannot listen on %s (%w): stop the other process or set %s to a free address: %v", addr, ErrAddrInUse, key, err)
		}
		_ = l.Close()
	}
	return host, port, nil
}

// applyCluster makes opts a member of cluster c.
func applyCluster(opts *server.Options, c Cluster) error {
	host, port, err := freeAddr(c.Listen, "nats.cluster.listen")
	if err != nil {
		return err
	}
	// A member that hangs (frozen, partitioned) loses its routes within
	// about 3s instead of nats-server's default of 4 minutes: until then
	// the other members keep routing requests to it (direct gets of the
	// lease among them), which go unanswered.
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port, PingInterval: time.Second, MaxPingsOut: 3}
	opts.Cluster.Username, opts.Cluster.Password = c.User, c.Password
	opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	if len(opts.Routes) != len(c.Routes) {
		return fmt.Errorf("nats.cluster.routes %q: want nats-route://host:port URLs", c.Routes)
	}
	if c.Password != "" {
		for _, r := range opts.Routes {
			r.User = url.UserPassword(c.User, c.Password)
		}
	}
	return nil
}

// LimitStore caps the JetStream file storage of the server's clients (its
// global account) at bytes; -1 removes the cap. Publishes beyond it are
// refused with "resource limits exceeded for account".
func (s *Server) LimitStore(bytes int64) error {
	return s.ns.GlobalAccount().UpdateJetStreamLimits(map[string]server.JetStreamAccountLimits{
		"": {MaxMemory: -1, MaxStore: bytes, MaxStreams: -1, MaxConsumers: -1, MaxAckPending: -1, MemoryMaxStreamBytes: -1, StoreMaxStreamBytes: -1},
	})
}

// ClientURL returns the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// MonitorURL returns the URL of the monitoring endpoint, http://host:port
// with the host it listens on, or "" when [Config.MonitorListen] is empty.
func (s *Server) MonitorURL() string {
	addr := s.ns.MonitorAddr()
	if addr == nil {
		return ""
	}
	return "http://" + addr.String()
}

// errorLog is the embedded server's logger. Like NoLog, it prints
// nothing; it keeps the last errors nats-server logs, so that [Start] can
// say why the server did not start: nats-server returns no error.
type errorLog struct {
	mu     sync.Mutex
	errs   []string // the last maxErrors errors and fatal errors, oldest first
	fatalf string   // the first fatal error
}

var _ server.Logger = (*errorLog)(nil)

// maxErrors is how many of the last errors an [errorLog] keeps.
const maxErrors = 3

func (l *errorLog) Noticef(string, ...any) {}
func (l *errorLog) Warnf(string, ...any)   {}
func (l *errorLog) Debugf(string, ...any)  {}
func (l *errorLog) Tracef(string, ...any)  {}

// Errorf keeps the error.
func (l *errorLog) Errorf(format string, v ...any) { l.keep(fmt.Sprintf(format, v...), false) }

// Fatalf keeps the error; unlike nats-server's own loggers, it does not
// exit the process.
func (l *errorLog) Fatalf(format string, v ...any) { l.keep(fmt.Sprintf(format, v...), true) }

func (l *errorLog) keep(msg string, fatal bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fatal && l.fatalf == "" {
		l.fatalf = msg
	}
	l.errs = append(l.errs, msg)
	if len(l.errs) > maxErrors {
		l.errs = l.errs[len(l.errs)-maxErrors:]
	}
}

// fatal returns the first fatal error, or "".
func (l *errorLog) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalf
}

// last returns the last errors, joined by "; ", or "".
func (l *errorLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errs, "; ")
}

// Close shuts the server down and waits until it has stopped. It is safe to
// call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}
