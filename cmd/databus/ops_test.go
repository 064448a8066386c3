package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/internal/testenv"
)

// scrape returns the samples of the Prometheus text at url: "name{labels}"
// (as printed) to value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// get returns the status code and body of url; a code of 0 when it
// cannot be reached.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// metricWait waits until the metric key satisfies ok.
func metricWait(t *testing.T, url, key, want string, ok func(float64) bool) float64 {
	t.Helper()
	var v float64
	testenv.Eventually(t, 30*time.Second, func() error {
		m := scrape(t, url)
		got, found := m[key]
		if !found || !ok(got) {
			return fmt.Errorf("%s = %v (present %v), want %s", key, got, found, want)
		}
		v = got
		return nil
	})
	return v
}

func TestOperationsMetricsHealthAdminAndSIGHUP(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
	env, url := captureEnv(t, db)
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "DATABUS_LOG_LEVEL=") })
	env = append(env, "DATABUS_HTTP_LISTEN="+httpAddr)
	// The log level comes from the file, which SIGHUP reads again.
	cfgFile := filepath.Join(t.TempDir(), "databus.yaml")
	writeFile(t, cfgFile, "log:\n  level: info\n")
	p := startDatabus(t, env, "run", "--config", cfgFile)
	base := "http://" + httpAddr
	metrics := base + "/metrics"
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "capturing" {
			return fmt.Errorf("readyz: %d %q", code, body)
		}
		return nil
	})
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}

	// A write load, one row per transaction.
	var written atomic.Int64
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	loadWG.Go(func() {
		conn := db.DB(t)
		for {
			select {
			case <-stopLoad:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := conn.Exec("INSERT INTO app.t (v) VALUES ('x')"); err == nil {
				written.Add(1)
			}
		}
	})
	stop := sync.OnceFunc(func() { close(stopLoad); loadWG.Wait() })
	defer stop()

	inserts := `databus_capture_events_total{op="insert",source="e2e"}`
	lagKey := `databus_capture_lag_seconds{source="e2e"}`
	first := metricWait(t, metrics, inserts, "> 0", func(v float64) bool { return v > 0 })
	metricWait(t, metrics, inserts, "growing", func(v float64) bool { return v > first+10 })
	m := scrape(t, metrics)
	for key, min := range map[string]float64{
		`databus_capture_transactions_total{source="e2e"}`: 1, `databus_capture_up{source="e2e"}`: 1,
		`databus_stream_messages{source="e2e"}`: 1, `databus_capture_last_event_timestamp_seconds{source="e2e"}`: float64(time.Now().Add(-time.Minute).Unix()),
		`go_goroutines`: 1, `process_resident_memory_bytes`: 1,
	} {
		if m[key] < min {
			t.Errorf("%s = %v, want at least %v", key, m[key], min)
		}
	}
	if lag := m[lagKey]; lag > 3 {
		t.Errorf("lag %vs while capture keeps up with a light load", lag)
	}

	// The admin service: info answers, pause stops capture and the lag grows.
	nc, _ := connectJS(t, url)
	infos, err := ops.Infos(t.Context(), nc, "e2e", ops.Waits{First: 5 * time.Second, More: 300 * time.Millisecond})
	if err != nil || len(infos) != 1 || infos[0].State != ops.StateCapturing || infos[0].Capture == nil || infos[0].Capture.Events == 0 {
		t.Fatalf("info: %+v, %v", infos, err)
	}
	// What `nats micro info databus` asks.
	msg, err := nc.Request("$SRV.INFO.databus", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("$SRV.INFO.databus: %v", err)
	}
	var svc struct {
		Name      string
		Endpoints []struct{ Name, Subject string }
	}
	if err := json.Unmarshal(msg.Data, &svc); err != nil || svc.Name != "databus" || len(svc.Endpoints) != 5 {
		t.Errorf("micro info: %s (%v)", msg.Data, err)
	}
	if r, err := ops.Ask(t.Context(), nc, "e2e", ops.EndpointPause, nil, 5*time.Second); err != nil || r.State != ops.StatePaused {
		t.Fatalf("pause: %+v %v", r, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused") {
			return fmt.Errorf("readyz while paused: %d %q", code, body)
		}
		return nil
	})
	paused := scrape(t, metrics)[inserts]
	metricWait(t, metrics, lagKey, ">= 3 while paused", func(v float64) bool { return v >= 3 })
	m = scrape(t, metrics)
	if m[inserts] != paused || m[`databus_capture_up{source="e2e"}`] != 0 || m[`databus_capture_paused{source="e2e"}`] != 1 {
		t.Errorf("while paused: inserts %v (then %v), up %v, paused %v", m[inserts], paused, m[`databus_capture_up{source="e2e"}`], m[`databus_capture_paused{source="e2e"}`])
	}
	if m[`databus_capture_binlog_behind_bytes{source="e2e"}`] <= 0 {
		t.Errorf("binlog_behind_bytes %v while paused under load", m[`databus_capture_binlog_behind_bytes{source="e2e"}`])
	}
	if r, err := ops.Ask(t.Context(), nc, "e2e", ops.EndpointResume, nil, 5*time.Second); err != nil || r.Node == "" {
		t.Fatalf("resume: %+v %v", r, err)
	}
	metricWait(t, metrics, lagKey, "< 3 after resume", func(v float64) bool { return v < 3 })
	stop()
	metricWait(t, metrics, lagKey, "0 once idle and caught up", func(v float64) bool { return v == 0 })
	metricWait(t, metrics, `databus_capture_binlog_behind_bytes{source="e2e"}`, "0 once idle", func(v float64) bool { return v == 0 })
	metricWait(t, metrics, inserts, fmt.Sprintf("every row written (%d)", written.Load()), func(v float64) bool { return v == float64(written.Load()) })

	// The log level: through the admin service, then SIGHUP.
	if r, err := ops.Ask(t.Context(), nc, "e2e", ops.EndpointLogLevel, []byte("warn"), 5*time.Second); err != nil || r.Level != "warn" || r.Previous != "info" {
		t.Errorf("loglevel warn: %+v %v", r, err)
	}
	if _, err := ops.Ask(t.Context(), nc, "e2e", ops.EndpointLogLevel, []byte("loud"), 5*time.Second); err == nil || !strings.Contains(err.Error(), "unknown log level") {
		t.Errorf("loglevel loud: %v", err)
	}
	writeFile(t, cfgFile, "log:\n  level: debug\nsnapshot:\n  keep: 3\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		r, err := ops.Ask(t.Context(), nc, "e2e", ops.EndpointLogLevel, nil, 5*time.Second)
		if err != nil || r.Level != "debug" {
			return fmt.Errorf("log level after SIGHUP: %+v %v", r, err)
		}
		return nil
	})
	testenv.Eventually(t, 5*time.Second, func() error {
		out := p.out.String()
		if !strings.Contains(out, "SIGHUP: configuration read again") || !strings.Contains(out, "only after a restart") || !strings.Contains(out, "snapshot.keep") {
			return fmt.Errorf("no SIGHUP lines (read again; snapshot.keep needs a restart) in the log:\n%s", tail(out, 2000))
		}
		return nil
	})
	select {
	case <-p.exited:
		t.Fatalf("SIGHUP ended databus run (exit %d)", p.code)
	default:
	}

	// A snapshot through the running process.
	code, out := runDatabus(t, env, "snapshot")
	if code != 0 || !strings.Contains(out, "taken by") {
		t.Errorf("databus snapshot: exit %d\n%s", code, out)
	}
	metricWait(t, metrics, `databus_snapshot_last_success_timestamp_seconds{source="e2e"}`, "recent", func(v float64) bool { return v > float64(time.Now().Add(-time.Minute).Unix()) })

	// MySQL gone: not ready, and why; back: ready.
	db.Kill(t)
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "retrying") {
			return fmt.Errorf("readyz with MySQL down: %d %q", code, body)
		}
		return nil
	})
	metricWait(t, metrics, `databus_capture_errors_total{kind="mysql",source="e2e"}`, "> 0", func(v float64) bool { return v > 0 })
	code, out = runDatabus(t, env, "status")
	if code != 0 || !strings.Contains(out, `"state": "retrying"`) {
		t.Errorf("status with MySQL down: exit %d\n%s", code, out)
	}
	db.Restart(t)
	testenv.Eventually(t, 60*time.Second, func() error {
		if code, body := get(t, base+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("readyz after MySQL came back: %d %q", code, body)
		}
		return nil
	})
	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, tail(p.out.String(), 2000))
	}
	// Nothing runs: status says so.
	code, out = runDatabus(t, env, "status")
	if code == 0 || !strings.Contains(out, "is `databus run` running?") {
		t.Errorf("status with nothing running: exit %d\n%s", code, out)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunWaitsForAnUnreachableNATSAndSaysWhy: with nats.url down at start,
// databus run waits, logging why and answering /readyz with it, and
// captures once the server is up.
func TestRunWaitsForAnUnreachableNATSAndSaysWhy(t *testing.T) {
	db := testenv.StartMariaDB(t)
	natsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := []string{
		"DATABUS_SOURCE=late", "DATABUS_MYSQL_ADDR=" + db.Addr(), "DATABUS_DATA_DIR=" + t.TempDir(),
		"DATABUS_NATS_URL=nats://" + natsAddr, "DATABUS_HTTP_LISTEN=" + httpAddr,
	}
	p := startDatabus(t, env, "run")
	testenv.Eventually(t, 30*time.Second, func() error {
		code, body := get(t, "http://"+httpAddr+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for NATS at nats://"+natsAddr) || !strings.Contains(body, "connection refused") {
			return fmt.Errorf("readyz: %d %q", code, body)
		}
		if !strings.Contains(p.out.String(), "waiting for NATS at nats://"+natsAddr) {
			return fmt.Errorf("the log does not say what run waits for yet:\n%s", p.out.String())
		}
		return nil
	})
	testenv.StartJetStream(t, embedded.Config{Listen: natsAddr})
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, body := get(t, "http://"+httpAddr+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("readyz once NATS is up: %d %q", code, body)
		}
		return nil
	})
	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, p.out.String())
	}
}

// TestApplyMetricsAndReadiness: databus apply's endpoint counts what it
// applied, shows the lag at 0 once the target caught up, and is ready
// while it applies; the embedded NATS server's monitoring port answers.
func TestApplyMetricsAndReadiness(t *testing.T) {
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	src.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	dst.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	env, _ := captureEnv(t, src)
	monitor := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	run := startDatabus(t, append(env, "DATABUS_NATS_MONITOR_LISTEN="+monitor), "run")
	waitCapturing(t, env, run)
	if code, body := get(t, "http://"+monitor+"/jsz"); code != http.StatusOK || !strings.Contains(body, "streams") {
		t.Errorf("the embedded server's monitoring port: %d %s", code, tail(body, 300))
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ap := startDatabus(t, append(env, "DATABUS_HTTP_LISTEN="+httpAddr), "apply", "--target", dst.DSN(""), "--from", "now", "--name", "m1")
	base := "http://" + httpAddr
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "applying" {
			return fmt.Errorf("apply readyz: %d %q", code, body)
		}
		return nil
	})
	for i := range 50 {
		src.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d)", i))
	}
	waitRows(t, dst, "app.t", 50)
	labels := `{name="m1",source="e2e"}`
	metricWait(t, base+"/metrics", "databus_apply_transactions_total"+labels, "50", func(v float64) bool { return v == 50 })
	m := scrape(t, base+"/metrics")
	if m["databus_apply_events_total"+labels] != 50 || m["databus_apply_up"+labels] != 1 || m["databus_apply_lag_seconds"+labels] != 0 ||
		m["databus_apply_commits_total"+labels] < 1 || m["databus_apply_stream_sequence"+labels] < 50 {
		t.Errorf("apply metrics after 50 transactions, caught up: %v", m)
	}
	if code := ap.stop(t); code != 0 {
		t.Errorf("apply exit %d:\n%s", code, ap.out.String())
	}
}
