package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
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
func Start(cfg Config) (*Server, error) {
	host, port, err := freeAddr(cfg.Listen, "nats.listen")
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating JetStream store %s: %w", cfg.StoreDir, err)
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
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s did not become ready within 10s", cfg.Listen)
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

// Close shuts the server down and waits until it has stopped. It is safe to
// call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}
