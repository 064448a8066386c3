package testenv

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/embedded"
)

// JetStream is an embedded NATS server with JetStream, storing in a
// temporary directory, for one test.
type JetStream struct {
	Server   *embedded.Server
	URL      string
	StoreDir string
	cfg      embedded.Config
}

// StartJetStream starts an embedded JetStream server on a free loopback
// port and stops it when the test ends. Options such as auth go in cfg;
// Listen and StoreDir are filled in when empty.
func StartJetStream(t testing.TB, cfg ...embedded.Config) *JetStream {
	t.Helper()
	var c embedded.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	if c.StoreDir == "" {
		c.StoreDir = t.TempDir()
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	}
	s, err := embedded.Start(c)
	if err != nil {
		t.Fatalf("starting embedded JetStream: %v", err)
	}
	j := &JetStream{Server: s, URL: s.ClientURL(), StoreDir: c.StoreDir, cfg: c}
	t.Cleanup(func() {
		// A server that does not stop (nats-server has left a stream's
		// lock held after a failed test) is left behind rather than
		// hanging the package until its timeout.
		closed := make(chan struct{})
		go func() {
			j.Server.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Errorf("the embedded NATS server did not shut down within 30 s; left running")
		}
	})
	return j
}

// Restart stops the server and starts it again on the same address and
// store, as after a crash or an upgrade.
func (j *JetStream) Restart(t testing.TB) {
	t.Helper()
	j.Server.Close()
	var err error
	Eventually(t, 10*time.Second, func() error {
		j.Server, err = embedded.Start(j.cfg)
		return err
	})
}

// Conn connects a client, closed when the test ends.
func (j *JetStream) Conn(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(j.URL, opts...)
	if err != nil {
		t.Fatalf("connecting to %s: %v", j.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
