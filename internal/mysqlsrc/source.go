package mysqlsrc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"time"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/internal/tlsconf"
	"github.com/go-sql-driver/mysql"
)

// Config says how to reach the source server.
type Config struct {
	Addr     string
	User     string
	Password string
	// ServerID is the replica id databus registers with; 0 derives one
	// from the source name.
	ServerID       uint32
	ConnectTimeout time.Duration
	// TLSMode is how connections use TLS; empty is preferred. TLS names
	// the CA that signs the server's certificate and the client's own
	// certificate and key.
	TLSMode tlsconf.Mode
	TLS     tlsconf.Files
}

// BinlogTLS returns the TLS configuration of the connections go-mysql
// opens (the binlog stream, the snapshot's readers): TLS when the
// database/sql connections to the server use it (info.TLS).
func (cfg Config) BinlogTLS(info ServerInfo) (*tls.Config, error) {
	if !info.TLS {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	c, err := tlsconf.MySQL(cfg.TLSMode, cfg.TLS, host)
	if err != nil {
		return nil, fmt.Errorf("%w: mysql.tls: %v", ErrSourceSettings, err)
	}
	return c, nil
}

// Check is the outcome of one start-up check.
type Check struct {
	Name string
	OK   bool
	// Detail says what was found; Fix what to do when not OK.
	Detail string
	Fix    string
}

// ServerInfo is what databus learns about the source at start.
type ServerInfo struct {
	Version    string
	MariaDB    bool
	ServerID   uint32
	ServerUUID string
	GTIDMode   bool
	// TLS is true when the connection to the server is encrypted.
	TLS bool
	// Collations maps collation ids to character set names.
	Collations map[uint64]string
}

// Flavor returns go-mysql's flavor name.
func (s ServerInfo) Flavor() string {
	if s.MariaDB {
		return "mariadb"
	}
	return "mysql"
}

// ioTimeout bounds each wait for the source's next bytes on the
// connections that run statements (not the binlog stream), and on the
// wire connections also the writing of a statement.
const ioTimeout = time.Minute

// openDB opens a database/sql handle on the source.
func openDB(cfg Config) (*sql.DB, error) {
	mc := mysql.NewConfig()
	mc.User = cfg.User
	mc.Passwd = cfg.Password
	mc.Net = "tcp"
	mc.Addr = cfg.Addr
	mc.Timeout = cfg.ConnectTimeout
	mc.InterpolateParams = true
	mc.ReadTimeout = ioTimeout
	mc.Params = map[string]string{"time_zone": "'+00:00'"}
	if err := tlsconf.Driver(mc, cfg.TLSMode, cfg.TLS); err != nil {
		return nil, fmt.Errorf("%w: mysql.tls: %v", ErrSourceSettings, err)
	}
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql.addr %s: %w", cfg.Addr, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(2)
	return db, nil
}

// Connect opens and pings the source. It returns [ErrAccessDenied] for bad
// credentials and [ErrUnreachable] for network failures.
func Connect(ctx context.Context, cfg Config) (*sql.DB, error) {
	db, err := openDB(cfg)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, Classify(cfg, err)
	}
	return db, nil
}

// Classify wraps an error of talking to the source: [ErrAccessDenied] for
// refused credentials, [ErrUnreachable] for network failures.
func Classify(cfg Config, err error) error {
	if tlsErr := classifyTLS(cfg, err); tlsErr != nil {
		return tlsErr
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1044, 1698:
			hint := ""
			if cfg.TLSMode == tlsconf.Disabled {
				// MariaDB refuses a connection without TLS to a server with
				// require_secure_transport=ON with this same error.
				hint = "; a server with require_secure_transport=ON refuses connections without TLS the same way, and mysql.tls.mode is disabled"
			}
			return fmt.Errorf("%w: user %q at %s: %s (check mysql.user and mysql.password%s)", ErrAccessDenied, cfg.User, cfg.Addr, me.Message, hint)
		}
		return fmt.Errorf("mysql %s: %w", cfg.Addr, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, mysql.ErrInvalidConn) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: %s: %v (is MySQL running there? see mysql.addr)", ErrUnreachable, cfg.Addr, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnreachable, cfg.Addr, err)
}

func variable(ctx context.Context, db *sql.DB, name string) (string, bool, error) {
	var n, v string
	err := db.QueryRowContext(ctx, "SHOW GLOBAL VARIABLES LIKE ?", name).Scan(&n, &v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading @@%s: %w", name, err)
	}
	return v, true, nil
}

// Inspect reads the server facts databus needs.
func Inspect(ctx context.Context, db *sql.DB) (ServerInfo, error) {
	var info ServerInfo
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@server_id").Scan(&info.Version, &info.ServerID); err != nil {
		return info, fmt.Errorf("reading server version: %w", err)
	}
	info.MariaDB = strings.Contains(strings.ToLower(info.Version), "mariadb")
	var name, cipher string
	if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return info, fmt.Errorf("reading Ssl_cipher: %w", err)
	}
	info.TLS = cipher != ""
	if !info.MariaDB {
		uuid, _, err := variable(ctx, db, "server_uuid")
		if err != nil {
			return info, err
		}
		info.ServerUUID = uuid
		mode, _, err := variable(ctx, db, "gtid_mode")
		if err != nil {
			return info, err
		}
		info.GTIDMode = strings.EqualFold(mode, "ON")
	} else {
		info.GTIDMode = true // MariaDB always writes GTIDs
	}
	rows, err := db.QueryContext(ctx, "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
	if err != nil {
		return info, fmt.Errorf("reading collations: %w", err)
	}
	defer rows.Close()
	info.Collations = map[uint64]string{}
	for rows.Next() {
		var id uint64
		var cs string
		if err := rows.Scan(&id, &cs); err != nil {
			return info, fmt.Errorf("reading collations: %w", err)
		}
		info.Collations[id] = cs
	}
	return info, rows.Err()
}

// settingChecks are the binlog settings capture depends on.
var settingChecks = []struct {
	name, want string
	optional   bool // absent on some servers
	fix        string
}{
	{"log_bin", "ON", false, "start the server with log_bin (e.g. log_bin=mysql-bin in my.cnf) and restart it"},
	{"binlog_format", "ROW", false, "SET GLOBAL binlog_format='ROW' and binlog_format=ROW in my.cnf"},
	{"binlog_row_image", "FULL", false, "SET GLOBAL binlog_row_image='FULL' and binlog_row_image=FULL in my.cnf"},
	{"binlog_row_metadata", "FULL", true, "SET GLOBAL binlog_row_metadata='FULL' and binlog_row_metadata=FULL in my.cnf (MariaDB 10.5+, MySQL 8.0.1+)"},
}

// Preflight runs every start-up check against an open connection and
// returns all results; the error is non-nil only when checking itself
// failed.
func Preflight(ctx context.Context, db *sql.DB, cfg Config, info ServerInfo) ([]Check, error) {
	var checks []Check
	for _, s := range settingChecks {
		v, ok, err := variable(ctx, db, s.name)
		if err != nil {
			return nil, err
		}
		c := Check{Name: s.name, Detail: fmt.Sprintf("%s = %s", s.name, v), Fix: s.fix}
		switch {
		case !ok:
			c.Detail = s.name + " is not supported by " + info.Version
			if s.name == "binlog_row_metadata" {
				c.Fix = "upgrade to MariaDB 10.5+ or MySQL 8.0.1+: databus needs column names in the binlog"
			}
		default:
			c.OK = strings.EqualFold(v, s.want) || (s.name == "log_bin" && v == "1")
		}
		checks = append(checks, c)
	}
	if v, ok, err := variable(ctx, db, "binlog_row_value_options"); err != nil {
		return nil, err
	} else if ok {
		checks = append(checks, Check{
			Name: "binlog_row_value_options", OK: !strings.Contains(strings.ToUpper(v), "PARTIAL_JSON"),
			Detail: fmt.Sprintf("binlog_row_value_options = %q", v),
			Fix:    "SET GLOBAL binlog_row_value_options='' (PARTIAL_JSON writes incomplete JSON row images)",
		})
	}
	checks = append(checks, Check{
		Name: "server_id", OK: info.ServerID != 0 && info.ServerID != cfg.ServerID,
		Detail: fmt.Sprintf("source server_id = %d, databus replica server_id = %d", info.ServerID, cfg.ServerID),
		Fix:    "give the source a non-zero server_id, and set mysql.server_id to a value no other server or replica uses",
	})
	checks = append(checks, grantsCheck(ctx, db, cfg))
	return checks, nil
}

// grantsCheck looks for the replication privileges in SHOW GRANTS.
func grantsCheck(ctx context.Context, db *sql.DB, cfg Config) Check {
	c := Check{
		Name: "privileges",
		Fix: fmt.Sprintf("GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '%s'@'%%' "+
			"(MariaDB 10.5+: REPLICATION SLAVE, BINLOG MONITOR)", cfg.User),
	}
	has, err := grants(ctx, db)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	var missing []string
	if !has("REPLICATION SLAVE") && !has("REPLICATION REPLICA") {
		missing = append(missing, "REPLICATION SLAVE")
	}
	if !has("REPLICATION CLIENT") && !has("BINLOG MONITOR") && !has("SUPER") {
		missing = append(missing, "REPLICATION CLIENT (MariaDB: BINLOG MONITOR)")
	}
	if len(missing) == 0 {
		c.OK = true
		c.Detail = "replication privileges granted"
		return c
	}
	c.Detail = fmt.Sprintf("user %q lacks %s", cfg.User, strings.Join(missing, " and "))
	return c
}

// snapshotGrantsCheck looks for RELOAD, which snapshots need to hold
// commits off while their read view opens. Capture alone does not.
func snapshotGrantsCheck(ctx context.Context, db *sql.DB, cfg Config) Check {
	c := Check{Name: "snapshot privileges", Fix: fmt.Sprintf("GRANT RELOAD ON *.* TO '%s'@'%%'", cfg.User)}
	has, err := grants(ctx, db)
	switch {
	case err != nil:
		c.Detail = err.Error()
	case has("RELOAD"):
		c.OK, c.Detail = true, "RELOAD granted (snapshots hold commits off while their read view opens)"
	default:
		c.Detail = fmt.Sprintf("user %q lacks RELOAD: snapshots fail (capture works without it)", cfg.User)
	}
	return c
}

// grants reads the connection's SHOW GRANTS and returns a function that
// reports whether a privilege is granted on *.* or by ALL PRIVILEGES.
func grants(ctx context.Context, db *sql.DB) (func(privilege string) bool, error) {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return nil, fmt.Errorf("cannot read grants: %w", err)
	}
	defer rows.Close()
	var all strings.Builder
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, fmt.Errorf("cannot read grants: %w", err)
		}
		all.WriteString(strings.ToUpper(g))
		all.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read grants: %w", err)
	}
	g := all.String()
	return func(p string) bool {
		return strings.Contains(g, "ALL PRIVILEGES ON *.*") || strings.Contains(g, p)
	}, nil
}

// FailedChecks turns failed checks into one error, or nil.
func FailedChecks(checks []Check) error {
	var msgs []string
	for _, c := range checks {
		if !c.OK {
			msgs = append(msgs, fmt.Sprintf("%s: %s; fix: %s", c.Name, c.Detail, c.Fix))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", ErrSourceSettings, strings.Join(msgs, "\n  "))
}

// VersionAtLeast reports whether the server version v (as in "10.11.9-MariaDB")
// is major.minor or later.
func VersionAtLeast(v string, major, minor int) bool {
	var a, b int
	if _, err := fmt.Sscanf(v, "%d.%d", &a, &b); err != nil {
		return false
	}
	return a > major || a == major && b >= minor
}

// DeriveServerID returns a replica server id derived from the source name,
// in [1<<20, 1<<31), unlikely to clash with hand-picked ids.
func DeriveServerID(source string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("databus/" + source))
	return 1<<20 + h.Sum32()%(1<<31-1<<20)
}

// CheckSource connects to the source and runs every start-up check without
// capturing. It returns the checks run so far and an error when the
// server cannot be reached at all.
func CheckSource(ctx context.Context, cfg Config) ([]Check, error) {
	if cfg.ServerID == 0 {
		cfg.ServerID = DeriveServerID("default")
	}
	db, err := Connect(ctx, cfg)
	if err != nil {
		return []Check{{Name: "mysql reachable", Detail: err.Error(), Fix: "check mysql.addr, mysql.user and mysql.password"}}, err
	}
	defer db.Close()
	info, err := Inspect(ctx, db)
	if err != nil {
		return nil, err
	}
	checks := []Check{{Name: "mysql reachable", OK: true, Detail: fmt.Sprintf("%s at %s", info.Version, cfg.Addr)}}
	more, err := Preflight(ctx, db, cfg, info)
	if err != nil {
		return checks, err
	}
	return append(append(checks, more...), snapshotGrantsCheck(ctx, db, cfg)), nil
}

// ColumnTraits is what the binlog does not say about a table's columns.
type ColumnTraits struct {
	// Generated names the generated columns, which SQL must not write.
	Generated map[string]bool
	// JSON names the text columns kept to JSON by a CHECK
	// (json_valid(col)): MariaDB's JSON type (see
	// [rowcodec.JSONCheckColumn]).
	JSON map[string]bool
}

// TableTraits returns the [ColumnTraits] of db.table as the server
// describes them now.
func TableTraits(ctx context.Context, db *sql.DB, info ServerInfo, schema, table string) (ColumnTraits, error) {
	tr := ColumnTraits{Generated: map[string]bool{}, JSON: map[string]bool{}}
	if err := scanNames(ctx, db, tr.Generated, "SELECT COLUMN_NAME FROM information_schema.COLUMNS "+
		"WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND EXTRA LIKE '%GENERATED%'", schema, table); err != nil {
		return tr, err
	}
	if !info.MariaDB {
		return tr, nil // MySQL's JSON is a type of its own
	}
	clauses := map[string]bool{}
	if err := scanNames(ctx, db, clauses, "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "+
		"WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?", schema, table); err != nil {
		return tr, err
	}
	for clause := range clauses {
		if name, ok := rowcodec.JSONCheckColumn(clause); ok {
			tr.JSON[name] = true
		}
	}
	return tr, nil
}

// scanNames adds the one-column result of q to set.
func scanNames(ctx context.Context, db *sql.DB, set map[string]bool, q string, args ...any) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		set[name] = true
	}
	return rows.Err()
}

// classifyTLS explains a failure to set up TLS with the source, or nil
// when err is not one.
func classifyTLS(cfg Config, err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		me        *mysql.MySQLError
	)
	mode := cfg.TLSMode.Effective()
	switch {
	case errors.As(err, &me) && strings.Contains(me.Message, "insecure transport"):
		return fmt.Errorf("%w: %s requires TLS (require_secure_transport=ON) and mysql.tls.mode is %s: set mysql.tls.mode to required, verify-ca or verify-identity (with mysql.tls.ca): %s",
			ErrSourceSettings, cfg.Addr, mode, me.Message)
	case errors.Is(err, mysql.ErrNoTLS):
		return fmt.Errorf("%w: %s offers no TLS and mysql.tls.mode is %s: enable TLS on the server (ssl_cert, ssl_key) or set mysql.tls.mode to preferred", ErrSourceSettings, cfg.Addr, mode)
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostname):
		return fmt.Errorf("%w: the TLS certificate of %s is not accepted (mysql.tls.mode %s, mysql.tls.ca %q): %v; "+
			"it must be signed by the CA in mysql.tls.ca, valid now, and name the host for verify-identity", ErrSourceSettings, cfg.Addr, mode, cfg.TLS.CA, err)
	}
	return nil
}
