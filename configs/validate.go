package configs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/databus/databus/internal/tlsconf"
	"github.com/nats-io/nkeys"
)

// bad is the error of key's value val.
func bad(key, val, format string, args ...any) error {
	return &ConfigError{Key: key, Value: val, Err: fmt.Errorf(format, args...)}
}

var sourceName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks values that decode but make no sense.
func (c Config) Validate() error {
	if !sourceName.MatchString(c.Source) {
		return bad("source", c.Source, "want 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if c.DataDir == "" {
		return bad("data_dir", "", "must not be empty")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return bad("log.level", c.Log.Level, "want debug, info, warn or error")
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		return bad("log.format", c.Log.Format, "want text or json")
	}
	if err := checkHostPort(c.MySQL.Addr); err != nil {
		return bad("mysql.addr", c.MySQL.Addr, "%v", err)
	}
	if c.MySQL.User == "" {
		return bad("mysql.user", "", "must not be empty")
	}
	if c.MySQL.ConnectTimeout <= 0 {
		return bad("mysql.connect_timeout", c.MySQL.ConnectTimeout.String(), "must be positive")
	}
	if c.MySQL.RetryMax < time.Second {
		return bad("mysql.retry_max", c.MySQL.RetryMax.String(), "must be at least 1s")
	}
	for _, db := range c.Capture.Databases {
		if db == "" || strings.Contains(db, ".") {
			return bad("capture.databases", db, "want a database name (a pattern with * and ? is allowed), without dots")
		}
	}
	for key, list := range map[string][]string{"capture.tables": c.Capture.Tables, "capture.exclude": c.Capture.Exclude} {
		for _, t := range list {
			db, table, ok := strings.Cut(t, ".")
			if db == "" || (key == "capture.tables" && (!ok || table == "")) {
				return bad(key, t, "want db.table (patterns with * and ? are allowed)")
			}
			if _, err := path.Match(db, ""); err != nil {
				return bad(key, t, "bad pattern: %v", err)
			}
		}
	}
	if c.NATS.URL == "" {
		if err := checkHostPort(c.NATS.Listen); err != nil {
			return bad("nats.listen", c.NATS.Listen, "%v", err)
		}
		if err := c.NATS.checkEmbeddedAuth(); err != nil {
			return err
		}
	}
	if c.HTTP.Listen != "" {
		if err := checkHostPort(c.HTTP.Listen); err != nil {
			return bad("http.listen", c.HTTP.Listen, "%v (or empty to turn the metrics and health endpoint off)", err)
		}
	}
	if m := c.NATS.MonitorListen; m != "" {
		if c.NATS.URL != "" {
			return bad("nats.monitor_listen", m, "it turns on the embedded server's monitoring port, and nats.url means no embedded server: turn monitoring on in your NATS server's own configuration")
		}
		if err := checkHostPort(m); err != nil {
			return bad("nats.monitor_listen", m, "%v", err)
		}
		if host, _, _ := net.SplitHostPort(m); !isLoopback(host) && !c.NATS.AllowUnauthenticated {
			return bad("nats.monitor_listen", m, "other machines can reach this address and the monitoring port asks for no credentials (it shows connections, subjects and accounts): "+
				"use a loopback address, or set nats.allow_unauthenticated on a private network")
		}
	}
	if r := c.NATS.Stream.Replicas; r < 1 || r > 5 {
		return bad("nats.stream.replicas", strconv.Itoa(r), "want 1 to 5")
	}
	if err := c.checkCluster(); err != nil {
		return err
	}
	if c.Capture.Lease < time.Second || c.Capture.Lease > time.Minute {
		return bad("capture.lease", c.Capture.Lease.String(), "want 1s to 1m")
	}
	if _, err := ParseCaptureStart(c.Capture.Start); err != nil {
		return bad("capture.start", c.Capture.Start, "%v", err)
	}
	if c.NATS.Stream.DuplicateWindow < time.Second {
		return bad("nats.stream.duplicate_window", c.NATS.Stream.DuplicateWindow.String(), "must be at least 1s")
	}
	if c.Snapshot.Interval < 0 || (c.Snapshot.Interval > 0 && c.Snapshot.Interval < time.Minute) {
		return bad("snapshot.interval", c.Snapshot.Interval.String(), "must be 0 (no schedule) or at least 1m")
	}
	if c.Snapshot.Keep < 1 {
		return bad("snapshot.keep", strconv.Itoa(c.Snapshot.Keep), "must be at least 1")
	}
	if c.Snapshot.Parallel < 0 || c.Snapshot.Parallel > 64 {
		return bad("snapshot.parallel", strconv.Itoa(c.Snapshot.Parallel), "want 0 (automatic) to 64")
	}
	if c.NATS.Stream.MaxAge < 0 {
		return bad("nats.stream.max_age", c.NATS.Stream.MaxAge.String(), "must not be negative (0 keeps events forever)")
	}
	if c.NATS.MaxStore < 0 {
		return bad("nats.max_store", strconv.FormatInt(c.NATS.MaxStore, 10), "must not be negative (0 means the disk is the limit)")
	}
	if c.NATS.Stream.MaxBytes < 0 {
		return bad("nats.stream.max_bytes", strconv.FormatInt(c.NATS.Stream.MaxBytes, 10), "must not be negative (0 means no limit)")
	}
	for prefix, t := range map[string]MySQLTLS{"mysql.tls": c.MySQL.TLS, "apply.tls": c.Apply.TLS} {
		if err := t.check(prefix); err != nil {
			return err
		}
	}
	if err := c.NATS.TLS.check(); err != nil {
		return err
	}
	if c.NATS.Token != "" && c.NATS.User != "" {
		return bad("nats.token", c.NATS.Token, "set either nats.token or nats.user/nats.password, not both")
	}
	return nil
}

// check checks a MySQL TLS setting whose keys start with prefix.
func (t MySQLTLS) check(prefix string) error {
	mode, err := tlsconf.ParseMode(t.Mode)
	if err != nil {
		return bad(prefix+".mode", t.Mode, "%v", err)
	}
	if (mode == tlsconf.VerifyCA || mode == tlsconf.VerifyIdentity) && t.CA == "" {
		return bad(prefix+".ca", "", "%s.mode %s checks the server's certificate: set %s.ca to the CA file that signs it", prefix, mode, prefix)
	}
	if (t.Cert == "") != (t.Key == "") {
		return bad(prefix+".cert", t.Cert, "set both %s.cert and %s.key, or neither", prefix, prefix)
	}
	return checkFiles(prefix, map[string]string{"ca": t.CA, "cert": t.Cert, "key": t.Key})
}

// check checks the NATS TLS settings.
func (t NATSTLS) check() error {
	if (t.Cert == "") != (t.Key == "") {
		return bad("nats.tls.cert", t.Cert, "set both nats.tls.cert and nats.tls.key, or neither")
	}
	if (t.ClientCert == "") != (t.ClientKey == "") {
		return bad("nats.tls.client_cert", t.ClientCert, "set both nats.tls.client_cert and nats.tls.client_key, or neither")
	}
	if t.VerifyClients && t.CA == "" {
		return bad("nats.tls.ca", "", "nats.tls.verify_clients checks client certificates: set nats.tls.ca to the CA file that signs them")
	}
	return checkFiles("nats.tls", map[string]string{"ca": t.CA, "cert": t.Cert, "key": t.Key, "client_cert": t.ClientCert, "client_key": t.ClientKey})
}

// checkFiles checks that the files named by prefix.<name> can be read.
func checkFiles(prefix string, files map[string]string) error {
	for name, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			return bad(prefix+"."+name, f, "cannot read it: %v", err)
		}
	}
	return nil
}

// checkEmbeddedAuth refuses an embedded server that anyone on the network
// may use, and role users that cannot work.
func (n NATS) checkEmbeddedAuth() error {
	auth := n.Auth.Roles() || n.User != "" || n.Token != ""
	host, _, _ := net.SplitHostPort(n.Listen)
	if !auth && !isLoopback(host) && !n.AllowUnauthenticated {
		return bad("nats.listen", n.Listen, "other machines can reach this address and the embedded server requires no credentials: "+
			"define users with roles (nats.auth.capture.password, nats.auth.reader.password, nats.auth.admin.password), "+
			"or set nats.allow_unauthenticated: true to let anyone who reaches it publish and delete")
	}
	if n.Auth.Roles() && n.Token != "" {
		return bad("nats.token", n.Token, "the embedded server takes either users with roles (nats.auth.*) or a token, not both")
	}
	for role, u := range map[string]RoleUser{"admin": n.Auth.Admin, "capture": n.Auth.Capture, "reader": n.Auth.Reader} {
		key := "nats.auth." + role
		switch {
		case u.Nkey != "" && u.Password != "":
			return bad(key+".nkey", u.Nkey, "set either %s.password or %s.nkey, not both", key, key)
		case u.Nkey != "" && !nkeys.IsValidPublicUserKey(u.Nkey):
			return bad(key+".nkey", u.Nkey, "want the user's public nkey (56 characters starting with U, from `nk -gen user -pubout`); the seed (SU…) stays with the client")
		case u.Password != "" && u.User == "":
			return bad(key+".user", "", "must not be empty when %s.password is set", key)
		}
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %v", err)
	}
	if host == "" {
		return errors.New("host is empty")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

var serverName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// checkCluster checks the embedded cluster's keys, and that the servers
// can hold the stream's replicas.
func (c Config) checkCluster() error {
	cl := c.NATS.Cluster
	if n := c.NATS.ServerName; n != "" && !serverName.MatchString(n) {
		return bad("nats.server_name", n, "want 1-64 characters of A-Z a-z 0-9 _ - (it is also a key in the state bucket)")
	}
	if !cl.Enabled() {
		if cl.Name != "" {
			return bad("nats.cluster.name", cl.Name, "set nats.cluster.listen and nats.cluster.routes too, or leave it empty")
		}
		if r := c.NATS.Stream.Replicas; r > 1 && c.NATS.URL == "" {
			return bad("nats.stream.replicas", strconv.Itoa(r), "the embedded NATS server is a single server and keeps one replica: "+
				"make it a cluster member (nats.cluster.listen, nats.cluster.routes; docs/ha.md), use a clustered NATS (nats.url), or set 1")
		}
		return nil
	}
	if c.NATS.URL != "" {
		return bad("nats.cluster.listen", cl.Listen, "nats.cluster.* makes the embedded server a cluster member, and nats.url means no embedded server: set one or the other")
	}
	if err := checkHostPort(cl.Listen); err != nil {
		return bad("nats.cluster.listen", cl.Listen, "%v (the address this node's cluster routes listen on)", err)
	}
	if host, _, _ := net.SplitHostPort(cl.Listen); !isLoopback(host) && cl.Password == "" && !c.NATS.AllowUnauthenticated {
		return bad("nats.cluster.listen", cl.Listen, "other machines can reach this address and the routes require no credentials: anyone who reaches it joins the cluster "+
			"and reads and writes everything: set nats.cluster.user and nats.cluster.password (the same on every node), "+
			"or set nats.allow_unauthenticated: true on a network only the nodes reach")
	}
	if (cl.User == "") != (cl.Password == "") {
		return bad("nats.cluster.user", cl.User, "set both nats.cluster.user and nats.cluster.password, or neither")
	}
	if cl.Name != "" && !serverName.MatchString(cl.Name) {
		return bad("nats.cluster.name", cl.Name, "want 1-64 characters of A-Z a-z 0-9 _ -")
	}
	_, listenPort, _ := net.SplitHostPort(cl.Listen)
	servers := map[string]bool{}
	self := false
	for _, r := range cl.Routes {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "nats-route" && u.Scheme != "nats") || checkHostPort(u.Host) != nil {
			return bad("nats.cluster.routes", r, "want nats-route://host:port")
		}
		if u.User != nil {
			return bad("nats.cluster.routes", u.Redacted(), "give the routes' credentials in nats.cluster.user and nats.cluster.password, not in the URL")
		}
		servers[u.Host] = true
		if u.Host == cl.Listen || u.Port() == listenPort && isLocal(u.Hostname()) {
			self = true
		}
	}
	if len(cl.Routes) == 0 {
		return bad("nats.cluster.routes", "", "list the route URLs of the other nodes (nats-route://host:port), or of every node")
	}
	n := len(servers)
	if !self {
		n++
	}
	if r := c.NATS.Stream.Replicas; r > n {
		return bad("nats.stream.replicas", strconv.Itoa(r), "the cluster has %d servers (this one and nats.cluster.routes) and a replica needs a server of its own: add routes or lower the replicas", n)
	}
	return nil
}

// isLocal reports whether host names this machine's loopback or any
// address.
func isLocal(host string) bool {
	ip := net.ParseIP(host)
	return isLoopback(host) || ip != nil && ip.IsUnspecified()
}

// isLoopback reports whether host is reachable from this machine only.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
