package configs

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// Cluster makes the embedded server a member of a JetStream cluster of
// databus nodes (docs/ha.md).
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string `koanf:"name"`
	// Listen is the host:port this node's routes listen on.
	Listen string `koanf:"listen"`
	// Routes are the route URLs (nats-route://host:port) of the cluster's
	// nodes; this node's own may be among them.
	Routes []string `koanf:"routes"`
	// User and Password, the same on every node, are required of the
	// routes between the nodes.
	User     string `koanf:"user"`
	Password string `koanf:"password"`
}

// Enabled reports whether the embedded server joins a cluster.
func (c Cluster) Enabled() bool { return c.Listen != "" || len(c.Routes) > 0 }

// EmbeddedServerName is the embedded server's name: nats.server_name, or
// for a cluster member "databus-<host name>-<cluster port>" (unique
// across the cluster's hosts and among nodes on one host), or
// "databus-<source>".
func (c Config) EmbeddedServerName() string {
	switch {
	case c.NATS.ServerName != "":
		return c.NATS.ServerName
	case c.NATS.Cluster.Enabled():
		_, port, _ := net.SplitHostPort(c.NATS.Cluster.Listen)
		return "databus-" + hostname() + "-" + port
	}
	return "databus-" + c.Source
}

// ClusterName is the embedded cluster's name: nats.cluster.name, or
// "databus-<source>".
func (c Config) ClusterName() string {
	if c.NATS.Cluster.Name != "" {
		return c.NATS.Cluster.Name
	}
	return "databus-" + c.Source
}

// NodeName names this `databus run` in the capture lease and in `databus
// status`: the embedded server's name, or with an external NATS server
// nats.server_name or "<host name>-<process id>".
func (c Config) NodeName() string {
	switch {
	case c.NATS.URL == "":
		return c.EmbeddedServerName()
	case c.NATS.ServerName != "":
		return c.NATS.ServerName
	}
	return hostname() + "-" + strconv.Itoa(os.Getpid())
}

// hostname is the machine's name reduced to letters, digits, '-' and '_'.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	h, _, _ = strings.Cut(h, ".")
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, h)
}
