package configs

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/databus/databus/sdk"
)

// EnvPrefix starts every environment variable databus reads.
const EnvPrefix = "DATABUS_"

// Config is the whole databus configuration. Components receive only their
// own part of it.
type Config struct {
	// Source names the captured server in stream and subject names.
	Source   string   `koanf:"source"`
	DataDir  string   `koanf:"data_dir"`
	Log      Log      `koanf:"log"`
	MySQL    MySQL    `koanf:"mysql"`
	Capture  Capture  `koanf:"capture"`
	NATS     NATS     `koanf:"nats"`
	Snapshot Snapshot `koanf:"snapshot"`
	Apply    Apply    `koanf:"apply"`
	HTTP     HTTP     `koanf:"http"`

	// set holds the keys given by the file, the environment or a flag.
	set map[string]bool
}

// HTTP configures the metrics and health endpoint of `databus run` and
// `databus apply`.
type HTTP struct {
	// Listen is the host:port of /metrics, /healthz and /readyz; empty
	// turns the endpoint off. Left at its default, `databus apply` uses
	// DefaultApplyHTTPListen, so that it runs beside `databus run`.
	Listen string `koanf:"listen"`
}

// IsSet reports whether key was given by the config file, an environment
// variable or a flag, rather than left at its default.
func (c Config) IsSet(key string) bool { return c.set[key] }

// Apply configures `databus apply`.
type Apply struct {
	// Target is the target server's DSN, user:password@tcp(host:port)/.
	// Set here or in DATABUS_APPLY_TARGET, the password stays out of the
	// process list (--target shows it there).
	Target string   `koanf:"target"`
	TLS    MySQLTLS `koanf:"tls"`
}

// Snapshot says when `databus run` takes snapshots and how many are kept.
type Snapshot struct {
	// OnStart takes a snapshot when capture starts and none exists.
	OnStart bool `koanf:"on_start"`
	// Interval takes one every interval; 0 disables the schedule.
	Interval time.Duration `koanf:"interval"`
	// Keep is how many complete snapshots are kept.
	Keep int `koanf:"keep"`
	// Parallel is how many tables a snapshot reads at the same time; 0
	// picks the number of CPUs, at most 4.
	Parallel int `koanf:"parallel"`
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// MySQL says how to reach the source server.
type MySQL struct {
	Addr     string `koanf:"addr"`
	User     string `koanf:"user"`
	Password string `koanf:"password"`
	// ServerID is the replica server id databus uses; 0 derives one from
	// the source name.
	ServerID uint32 `koanf:"server_id"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// RetryMax is the longest wait between reconnection attempts.
	RetryMax time.Duration `koanf:"retry_max"`
	TLS      MySQLTLS      `koanf:"tls"`
}

// MySQLTLS says how a connection to MySQL/MariaDB uses TLS.
type MySQLTLS struct {
	// Mode is disabled, preferred, required, verify-ca or verify-identity
	// (MySQL's --ssl-mode).
	Mode string `koanf:"mode"`
	// CA signs the server's certificate; Cert and Key are the client's.
	CA   string `koanf:"ca"`
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
}

// NATSTLS configures TLS with NATS.
type NATSTLS struct {
	// CA signs the NATS server's certificate (and, with VerifyClients,
	// the clients').
	CA string `koanf:"ca"`
	// Cert and Key are the embedded server's certificate; with them it
	// requires TLS.
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
	// VerifyClients makes the embedded server require client
	// certificates signed by CA.
	VerifyClients bool `koanf:"verify_clients"`
	// ClientCert and ClientKey are this process's client certificate.
	ClientCert string `koanf:"client_cert"`
	ClientKey  string `koanf:"client_key"`
}

// Capture selects what is captured.
type Capture struct {
	Databases []string `koanf:"databases"`
	Tables    []string `koanf:"tables"`
	Exclude   []string `koanf:"exclude"`
	// AtomicTransactions publishes every transaction that fits a JetStream
	// atomic batch as one (NATS 2.12+): no consumer sees part of it.
	AtomicTransactions bool `koanf:"atomic_transactions"`
	// Lease is how long the capture lease lasts without renewal: a
	// standby `databus run` takes over that long after the leader stops
	// renewing it (docs/ha.md).
	Lease time.Duration `koanf:"lease"`
	// Start is where a capture without a checkpoint begins reading the
	// binlog: see [ParseCaptureStart] and [Capture.StartPoint].
	Start string `koanf:"start"`
}

// StartPoint returns Start parsed (Validate has checked it).
func (c Capture) StartPoint() CaptureStart {
	s, _ := ParseCaptureStart(c.Start)
	return s
}

// NATS says which NATS server to use and how the stream is kept.
type NATS struct {
	Listen   string `koanf:"listen"`
	URL      string `koanf:"url"`
	User     string `koanf:"user"`
	Password string `koanf:"password"`
	Token    string `koanf:"token"`
	Creds    string `koanf:"creds"`
	// NkeySeed is a file holding the nkey seed (SU…) this process
	// authenticates with.
	NkeySeed string `koanf:"nkey_seed"`
	// Auth defines the embedded server's users, one per role.
	Auth Auth `koanf:"auth"`
	// AllowUnauthenticated lets the embedded server listen on an address
	// other machines reach without requiring any credentials.
	AllowUnauthenticated bool    `koanf:"allow_unauthenticated"`
	TLS                  NATSTLS `koanf:"tls"`
	// MaxStore caps the embedded server's JetStream storage in bytes (0:
	// the disk is the limit).
	MaxStore int64 `koanf:"max_store"`
	// ServerName names the embedded server, and this node in the capture
	// lease and `databus status`; unique in a cluster. Empty: derived
	// (see [Config.NodeName]).
	ServerName string `koanf:"server_name"`
	// MonitorListen, when set, is the host:port of the embedded server's
	// HTTP monitoring endpoint (/varz, /jsz, …), for `nats server`
	// commands over HTTP, the NATS Prometheus exporter and dashboards.
	MonitorListen string  `koanf:"monitor_listen"`
	Cluster       Cluster `koanf:"cluster"`
	Stream        Stream  `koanf:"stream"`
}

// Auth holds the embedded server's users with roles. A role is defined
// when its password or nkey is set; when any is, these are the only users.
type Auth struct {
	Admin   RoleUser `koanf:"admin"`
	Capture RoleUser `koanf:"capture"`
	Reader  RoleUser `koanf:"reader"`
}

// RoleUser is the user of one role: a name and password, or a public nkey.
type RoleUser struct {
	User     string `koanf:"user"`
	Password string `koanf:"password"`
	Nkey     string `koanf:"nkey"`
}

// Defined reports whether the role has a user.
func (u RoleUser) Defined() bool { return u.Password != "" || u.Nkey != "" }

// Roles reports whether any role has a user.
func (a Auth) Roles() bool { return a.Admin.Defined() || a.Capture.Defined() || a.Reader.Defined() }

// Stream configures the source's JetStream stream.
type Stream struct {
	Replicas        int           `koanf:"replicas"`
	MaxAge          time.Duration `koanf:"max_age"`
	MaxBytes        int64         `koanf:"max_bytes"`
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
}

// Defaults that components also fall back to when they are given zero
// values, so that a default lives in one place.
const (
	// DefaultConnectTimeout is mysql.connect_timeout.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultRetryMax is mysql.retry_max.
	DefaultRetryMax = 30 * time.Second
	// DefaultSnapshotKeep is snapshot.keep.
	DefaultSnapshotKeep = 2
	// DefaultLease is capture.lease.
	DefaultLease = 3 * time.Second
	// DefaultHTTPListen is http.listen: a loopback port none of NATS's
	// usual ports (4222, 6222, 7422, 8222) clashes with.
	DefaultHTTPListen = "127.0.0.1:9650"
	// DefaultApplyHTTPListen is where `databus apply` listens when
	// http.listen is left at its default.
	DefaultApplyHTTPListen = "127.0.0.1:9651"
)

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Source:  "default",
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "text"},
		MySQL: MySQL{
			Addr:           "127.0.0.1:3306",
			User:           "root",
			ConnectTimeout: DefaultConnectTimeout,
			RetryMax:       DefaultRetryMax,
			TLS:            MySQLTLS{Mode: "preferred"},
		},
		Capture: Capture{Databases: []string{}, Tables: []string{}, Exclude: []string{}, Lease: DefaultLease, Start: StartNow},
		NATS: NATS{
			Listen: "127.0.0.1:4222",
			Auth: Auth{
				Admin:   RoleUser{User: "admin"},
				Capture: RoleUser{User: "capture"},
				Reader:  RoleUser{User: "reader"},
			},
			Stream: Stream{Replicas: 1, DuplicateWindow: 10 * time.Minute},
		},
		Snapshot: Snapshot{OnStart: true, Keep: DefaultSnapshotKeep},
		Apply:    Apply{TLS: MySQLTLS{Mode: "preferred"}},
		HTTP:     HTTP{Listen: DefaultHTTPListen},
	}
}

// defaultsMap is Defaults as a flat key map, the list of known keys.
func defaultsMap() map[string]any {
	d := Defaults()
	return map[string]any{
		"source":                       d.Source,
		"data_dir":                     d.DataDir,
		"log.level":                    d.Log.Level,
		"log.format":                   d.Log.Format,
		"mysql.addr":                   d.MySQL.Addr,
		"mysql.user":                   d.MySQL.User,
		"mysql.password":               d.MySQL.Password,
		"mysql.server_id":              d.MySQL.ServerID,
		"mysql.connect_timeout":        d.MySQL.ConnectTimeout.String(),
		"mysql.retry_max":              d.MySQL.RetryMax.String(),
		"mysql.tls.mode":               d.MySQL.TLS.Mode,
		"mysql.tls.ca":                 d.MySQL.TLS.CA,
		"mysql.tls.cert":               d.MySQL.TLS.Cert,
		"mysql.tls.key":                d.MySQL.TLS.Key,
		"capture.databases":            d.Capture.Databases,
		"capture.tables":               d.Capture.Tables,
		"capture.exclude":              d.Capture.Exclude,
		"capture.atomic_transactions":  d.Capture.AtomicTransactions,
		"capture.lease":                d.Capture.Lease.String(),
		"capture.start":                d.Capture.Start,
		"nats.listen":                  d.NATS.Listen,
		"nats.url":                     d.NATS.URL,
		"nats.user":                    d.NATS.User,
		"nats.password":                d.NATS.Password,
		"nats.token":                   d.NATS.Token,
		"nats.creds":                   d.NATS.Creds,
		"nats.nkey_seed":               d.NATS.NkeySeed,
		"nats.allow_unauthenticated":   d.NATS.AllowUnauthenticated,
		"nats.tls.ca":                  d.NATS.TLS.CA,
		"nats.tls.cert":                d.NATS.TLS.Cert,
		"nats.tls.key":                 d.NATS.TLS.Key,
		"nats.tls.verify_clients":      d.NATS.TLS.VerifyClients,
		"nats.tls.client_cert":         d.NATS.TLS.ClientCert,
		"nats.tls.client_key":          d.NATS.TLS.ClientKey,
		"nats.auth.admin.user":         d.NATS.Auth.Admin.User,
		"nats.auth.admin.password":     d.NATS.Auth.Admin.Password,
		"nats.auth.admin.nkey":         d.NATS.Auth.Admin.Nkey,
		"nats.auth.capture.user":       d.NATS.Auth.Capture.User,
		"nats.auth.capture.password":   d.NATS.Auth.Capture.Password,
		"nats.auth.capture.nkey":       d.NATS.Auth.Capture.Nkey,
		"nats.auth.reader.user":        d.NATS.Auth.Reader.User,
		"nats.auth.reader.password":    d.NATS.Auth.Reader.Password,
		"nats.auth.reader.nkey":        d.NATS.Auth.Reader.Nkey,
		"nats.max_store":               d.NATS.MaxStore,
		"nats.server_name":             d.NATS.ServerName,
		"nats.monitor_listen":          d.NATS.MonitorListen,
		"http.listen":                  d.HTTP.Listen,
		"nats.cluster.name":            d.NATS.Cluster.Name,
		"nats.cluster.listen":          d.NATS.Cluster.Listen,
		"nats.cluster.routes":          []string{},
		"nats.cluster.user":            d.NATS.Cluster.User,
		"nats.cluster.password":        d.NATS.Cluster.Password,
		"nats.stream.replicas":         d.NATS.Stream.Replicas,
		"nats.stream.max_age":          "0s",
		"nats.stream.max_bytes":        d.NATS.Stream.MaxBytes,
		"nats.stream.duplicate_window": d.NATS.Stream.DuplicateWindow.String(),
		"snapshot.on_start":            d.Snapshot.OnStart,
		"snapshot.interval":            "0s",
		"snapshot.keep":                d.Snapshot.Keep,
		"snapshot.parallel":            d.Snapshot.Parallel,
		"apply.target":                 d.Apply.Target,
		"apply.tls.mode":               d.Apply.TLS.Mode,
		"apply.tls.ca":                 d.Apply.TLS.CA,
		"apply.tls.cert":               d.Apply.TLS.Cert,
		"apply.tls.key":                d.Apply.TLS.Key,
	}
}

// Keys returns every configuration key, sorted.
func Keys() []string {
	m := defaultsMap()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// EnvName returns the environment variable of key: "mysql.addr" is
// DATABUS_MYSQL_ADDR.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// FlagName returns the command-line flag of key: "mysql.addr" is
// --mysql-addr.
func FlagName(key string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(key)
}

// ConfigError reports a bad configuration key or value.
type ConfigError struct {
	Key   string
	Value string
	Err   error
}

func (e *ConfigError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("config %s=%q: %v", e.Key, shown(e.Key, e.Value), e.Err)
	}
	return fmt.Sprintf("config %s: %v", e.Key, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// shown is how the value of key may be printed: secrets hidden.
func shown(key, value string) string {
	switch {
	case strings.HasSuffix(key, "password") || strings.HasSuffix(key, "token"):
		return "(hidden)"
	case strings.HasSuffix(key, "url"):
		return sdk.RedactURL(value)
	case key == "apply.target":
		return redactDSN(value)
	}
	return value
}

// redactDSN returns a go-sql-driver DSN (user:password@tcp(host:port)/db)
// with its password masked.
func redactDSN(dsn string) string {
	at := strings.LastIndexByte(dsn, '@')
	if at < 0 {
		return dsn
	}
	user, _, ok := strings.Cut(dsn[:at], ":")
	if !ok {
		return dsn
	}
	return user + ":" + sdk.RedactMask + dsn[at:]
}
