package configs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "databus.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	cfg, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MySQL.Addr != "127.0.0.1:3306" || cfg.NATS.Listen != "127.0.0.1:4222" || cfg.DataDir != "./data" {
		t.Errorf("defaults: got %+v", cfg)
	}
	if cfg.NATS.Stream.DuplicateWindow != 10*time.Minute {
		t.Errorf("duplicate window: got %v", cfg.NATS.Stream.DuplicateWindow)
	}
}

func TestExampleFileHasEveryKey(t *testing.T) {
	cfg, err := Load("databus.example.yaml", nil, nil)
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	if want := Defaults(); cfg.Source != want.Source || cfg.MySQL != want.MySQL {
		t.Errorf("example differs from defaults: got %+v", cfg)
	}
	body, err := os.ReadFile("databus.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		leaf := k[lastDot(k)+1:]
		if !containsLine(string(body), leaf+":") {
			t.Errorf("example config does not document key %s", k)
		}
	}
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

func containsLine(body, prefix string) bool {
	for i := 0; i+len(prefix) <= len(body); i++ {
		if body[i:i+len(prefix)] == prefix && (i == 0 || body[i-1] == ' ' || body[i-1] == '\n') {
			return true
		}
	}
	return false
}

func TestPrecedence(t *testing.T) {
	p := writeFile(t, "source: fromfile\nmysql:\n  addr: file:1\n  user: fileuser\ncapture:\n  databases: [a, b]\n")
	env := []string{"DATABUS_MYSQL_ADDR=env:2", "DATABUS_CAPTURE_TABLES=x.y, z.w", "HOME=/root"}
	cfg, err := Load(p, env, map[string]string{"mysql.addr": "flag:3"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source != "fromfile" || cfg.MySQL.User != "fileuser" {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.MySQL.Addr != "flag:3" {
		t.Errorf("mysql.addr: got %q, want the flag's value", cfg.MySQL.Addr)
	}
	if !slices.Equal(cfg.Capture.Tables, []string{"x.y", "z.w"}) {
		t.Errorf("capture.tables from env: got %q", cfg.Capture.Tables)
	}
	if !slices.Equal(cfg.Capture.Databases, []string{"a", "b"}) {
		t.Errorf("capture.databases from file: got %q", cfg.Capture.Databases)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, file string
		env        []string
		flags      map[string]string
		key        string
	}{
		{name: "unknown file key", file: "mysql:\n  adr: x:1\n", key: "mysql.adr"},
		{name: "unknown env var", env: []string{"DATABUS_MYSQL_HOST=x"}, key: "DATABUS_MYSQL_HOST"},
		{name: "bad duration", file: "mysql:\n  connect_timeout: soon\n", key: "mysql.connect_timeout"},
		{name: "bad number", env: []string{"DATABUS_NATS_STREAM_REPLICAS=three"}, key: "nats.stream.replicas"},
		{name: "replicas out of range", flags: map[string]string{"nats.stream.replicas": "7"}, key: "nats.stream.replicas"},
		{name: "bad addr", flags: map[string]string{"mysql.addr": "localhost"}, key: "mysql.addr"},
		{name: "bad source", flags: map[string]string{"source": "a.b"}, key: "source"},
		{name: "bad table", file: "capture:\n  tables: [orders]\n", key: "capture.tables"},
		{name: "bad level", env: []string{"DATABUS_LOG_LEVEL=loud"}, key: "log.level"},
		{name: "replicas on a single embedded server", env: []string{"DATABUS_NATS_STREAM_REPLICAS=3"}, key: "nats.stream.replicas"},
		{name: "routes without listen", env: []string{"DATABUS_NATS_CLUSTER_ROUTES=nats-route://a:6222"}, key: "nats.cluster.listen"},
		{name: "listen without routes", env: []string{"DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:6222"}, key: "nats.cluster.routes"},
		{name: "route not a URL", env: []string{"DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:6222", "DATABUS_NATS_CLUSTER_ROUTES=db2:6222"}, key: "nats.cluster.routes"},
		{name: "cluster name alone", env: []string{"DATABUS_NATS_CLUSTER_NAME=c"}, key: "nats.cluster.name"},
		{name: "replicas beyond the routes", env: []string{"DATABUS_NATS_CLUSTER_LISTEN=0.0.0.0:6222",
			"DATABUS_NATS_CLUSTER_ROUTES=nats-route://127.0.0.1:6222,nats-route://db2:6222", "DATABUS_NATS_STREAM_REPLICAS=3",
			"DATABUS_NATS_CLUSTER_USER=route", "DATABUS_NATS_CLUSTER_PASSWORD=pw"}, key: "nats.stream.replicas"},
		{name: "routes open to the network without credentials", env: []string{"DATABUS_NATS_CLUSTER_LISTEN=0.0.0.0:6222",
			"DATABUS_NATS_CLUSTER_ROUTES=nats-route://db2:6222"}, key: "nats.cluster.listen"},
		{name: "route credentials in the URL", env: []string{"DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:6222",
			"DATABUS_NATS_CLUSTER_ROUTES=nats-route://u:p@db2:6222"}, key: "nats.cluster.routes"},
		{name: "cluster with an external server", env: []string{"DATABUS_NATS_URL=nats://x:4222", "DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:6222",
			"DATABUS_NATS_CLUSTER_ROUTES=nats-route://db2:6222"}, key: "nats.cluster.listen"},
		{name: "bad server name", env: []string{"DATABUS_NATS_SERVER_NAME=a b"}, key: "nats.server_name"},
		{name: "lease too short", env: []string{"DATABUS_CAPTURE_LEASE=100ms"}, key: "capture.lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ""
			if tt.file != "" {
				p = writeFile(t, tt.file)
			}
			_, err := Load(p, tt.env, tt.flags)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.Key != tt.key {
				t.Errorf("key: got %q, want %q (error: %v)", ce.Key, tt.key, err)
			}
		})
	}
}

func TestClusterOfThree(t *testing.T) {
	routes := "nats-route://db1:6222,nats-route://db2:6222,nats-route://db3:6222"
	cfg, err := Load("", []string{"DATABUS_NATS_LISTEN=127.0.0.1:4222", "DATABUS_NATS_CLUSTER_LISTEN=0.0.0.0:6222",
		"DATABUS_NATS_CLUSTER_ROUTES=" + routes, "DATABUS_NATS_STREAM_REPLICAS=3", "DATABUS_NATS_CLUSTER_USER=route", "DATABUS_NATS_CLUSTER_PASSWORD=pw"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.NATS.Cluster.Routes; len(got) != 3 || got[2] != "nats-route://db3:6222" {
		t.Errorf("routes: got %q, want the three of %q", got, routes)
	}
	name := cfg.EmbeddedServerName()
	if !strings.HasPrefix(name, "databus-") || !strings.HasSuffix(name, "-6222") || cfg.NodeName() != name {
		t.Errorf("server name %q, node name %q: want databus-<host>-6222 for both", name, cfg.NodeName())
	}
}

func TestPasswordNotInErrors(t *testing.T) {
	_, err := Load("", []string{"DATABUS_NATS_TOKEN=s3cret", "DATABUS_NATS_USER=u"}, nil)
	if err == nil {
		t.Fatal("token and user together: got no error")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Errorf("error leaks the secret: %s", got)
	}
}

func TestChangedNamesTheKeysThatDiffer(t *testing.T) {
	a := Defaults()
	b := a
	b.Log.Level, b.NATS.Stream.Replicas, b.Capture.Tables = "debug", 3, []string{"app.t"}
	got := Changed(a, b)
	want := []string{"capture.tables", "log.level", "nats.stream.replicas"}
	if !slices.Equal(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
	if got := Changed(a, a); len(got) != 0 {
		t.Errorf("Changed of equal configs = %v", got)
	}
}

func TestIsSetTellsGivenKeysFromDefaults(t *testing.T) {
	cfg, err := Load("", []string{"DATABUS_HTTP_LISTEN="}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.IsSet("http.listen") || cfg.HTTP.Listen != "" || cfg.IsSet("nats.listen") {
		t.Errorf("IsSet(http.listen) %v, listen %q, IsSet(nats.listen) %v", cfg.IsSet("http.listen"), cfg.HTTP.Listen, cfg.IsSet("nats.listen"))
	}
	if _, err := Load("", []string{"DATABUS_NATS_MONITOR_LISTEN=0.0.0.0:8222"}, nil); err == nil || !strings.Contains(err.Error(), "nats.allow_unauthenticated") {
		t.Errorf("a monitoring port open to the network: %v", err)
	}
}
