package embedded_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/testenv"
)

// start starts a server on free loopback ports with a temporary store, and
// closes it when the test ends.
func start(t *testing.T, cfg embedded.Config) *embedded.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: decoding JSON: %v", url, err)
	}
	return resp.StatusCode, body
}

func TestMonitor(t *testing.T) {
	s := start(t, embedded.Config{Name: "monitored", MonitorListen: "127.0.0.1:0"})
	url := s.MonitorURL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("MonitorURL() = %q, want http://127.0.0.1:<picked port>", url)
	}

	status, body := get(t, url+"/varz")
	if status != http.StatusOK {
		t.Fatalf("GET /varz: status %d, want 200", status)
	}
	var varz struct {
		ServerName string `json:"server_name"`
	}
	if err := json.Unmarshal(body, &varz); err != nil {
		t.Fatal(err)
	}
	if got, want := varz.ServerName, "monitored"; got != want {
		t.Errorf("/varz server_name = %q, want %q", got, want)
	}
	for _, path := range []string{"/jsz", "/connz", "/healthz"} {
		if status, body := get(t, url+path); status != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200: %s", path, status, body)
		}
	}
}

func TestMonitorOff(t *testing.T) {
	s := start(t, embedded.Config{})
	if got := s.MonitorURL(); got != "" {
		t.Errorf("MonitorURL() = %q, want \"\" without MonitorListen", got)
	}
}

func TestMonitorAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	_, err = embedded.Start(embedded.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MonitorListen: l.Addr().String()})
	if !errors.Is(err, embedded.ErrAddrInUse) {
		t.Fatalf("Start with a taken monitoring port: %v, want %v", err, embedded.ErrAddrInUse)
	}
	if !strings.Contains(err.Error(), "nats.monitor_listen") {
		t.Errorf("error %q does not name nats.monitor_listen", err)
	}
}

// TestStartFatal checks that an error nats-server only logs comes back
// from Start, at once: here the monitoring endpoint takes the client port
// before the client listener opens it.
func TestStartFatal(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	begin := time.Now()
	s, err := embedded.Start(embedded.Config{Listen: addr, MonitorListen: addr, StoreDir: t.TempDir()})
	if err == nil {
		s.Close()
		t.Fatal("Start with the client and monitoring endpoints on one address succeeded")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not give nats-server's cause", err)
	}
	// Without the logged error, Start waits its full 10s.
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Start took %v to fail", d)
	}
}

func TestStoreNotWritable(t *testing.T) {
	tests := []struct {
		name string
		// store returns the StoreDir, and the path the error must name.
		store    func(t *testing.T) (dir, bad string)
		want     error
		needUser bool // root writes anyway
	}{
		{"read-only", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			chmod(t, dir, 0o500)
			return dir, dir
		}, fs.ErrPermission, true},
		{"jetstream read-only", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			js := mkdir(t, dir, "jetstream")
			chmod(t, js, 0o500)
			return dir, js
		}, fs.ErrPermission, true},
		{"a file", func(t *testing.T) (string, string) {
			f := touch(t, t.TempDir(), "store")
			return f, f
		}, syscall.ENOTDIR, false},
		{"under a file", func(t *testing.T) (string, string) {
			f := touch(t, t.TempDir(), "data")
			return filepath.Join(f, "nats"), filepath.Join(f, "nats")
		}, syscall.ENOTDIR, false},
		{"jetstream a file", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			return dir, touch(t, dir, "jetstream")
		}, syscall.ENOTDIR, false},
		{"jetstream a dangling link", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			js := filepath.Join(dir, "jetstream")
			if err := os.Symlink(filepath.Join(dir, "gone"), js); err != nil {
				t.Fatal(err)
			}
			return dir, js
		}, fs.ErrNotExist, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needUser && os.Geteuid() == 0 {
				t.Skip("root ignores permissions")
			}
			dir, bad := tt.store(t)
			begin := time.Now()
			s, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", StoreDir: dir})
			if err == nil {
				s.Close()
				t.Fatalf("Start with store %s succeeded", dir)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q, want it to wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), bad+" (") {
				t.Errorf("error %q does not name %s", err, bad)
			}
			if !strings.Contains(err.Error(), "data_dir") {
				t.Errorf("error %q does not say what to do", err)
			}
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("Start took %v to fail", d)
			}
		})
	}
}

// TestStoreProbeLeavesNothing checks that the write test of the store
// directory cleans up after itself, on a first start and a restart.
func TestStoreProbeLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		s, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", StoreDir: dir})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		s.Close()
	}
	for _, d := range []string{dir, filepath.Join(dir, "jetstream")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".databus") {
				t.Errorf("%s left in %s", e.Name(), d)
			}
		}
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(path, 0o700) }) // so TempDir can remove it
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	path := filepath.Join(parent, name)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func touch(t *testing.T, parent, name string) string {
	t.Helper()
	path := filepath.Join(parent, name)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
