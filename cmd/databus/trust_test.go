package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestRetentionGapStopsApplyAndTail: events removed by the stream's
// retention before apply or a durable tail read them stop both, naming the
// lost range and the way back, instead of skipping to what is left.
func TestRetentionGapStopsApplyAndTail(t *testing.T) {
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	env, _ := captureEnv(t, src)
	env = append(env, "DATABUS_NATS_STREAM_MAX_BYTES=40000")
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)

	ap := startDatabus(t, env, "apply", "--target", dst.DSN(""), "--from", "now")
	testenv.Eventually(t, 20*time.Second, func() error { // "now" is pinned on the target
		var seq uint64
		return dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&seq)
	})
	tail := startDatabus(t, env, "tail", "--durable", "reader", "--from", "now", "--count", "2")
	time.Sleep(time.Second) // the consumer exists
	src.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, pad VARCHAR(200))", "INSERT INTO app.t VALUES (1, ''), (2, '')")
	if code := tail.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("tail exited %d:\n%s", code, tail.out.String())
	}
	waitRows(t, dst, "app.t", 2)
	if code := ap.stop(t); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, ap.out.String())
	}

	for i := range 300 {
		src.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d, REPEAT('x', 200))", 100+i))
	}
	time.Sleep(time.Second) // captured

	for _, c := range []struct {
		name string
		args []string
		says []string
	}{
		{"tail", []string{"tail", "--durable", "reader"}, []string{"events lost", "no longer holds sequences", "--from snapshot"}},
		{"apply", []string{"apply", "--target", dst.DSN("")}, []string{"events lost", "no longer holds sequences", "apply --from snapshot"}},
	} {
		code, out := runDatabus(t, env, c.args...)
		if code == 0 {
			t.Errorf("%s: exit 0 after events were lost:\n%s", c.name, out)
		}
		for _, s := range c.says {
			if !strings.Contains(out, s) {
				t.Errorf("%s: output does not say %q:\n%s", c.name, s, out)
			}
		}
	}
	var n int
	if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM app.t").Scan(&n); err != nil || n != 2 {
		t.Errorf("target holds %d rows (%v): apply must not have applied anything after the gap", n, err)
	}
}

// TestSecretsAreNeverPrinted runs every command, in success and in
// failure, with passwords in nats.url, mysql.password and the apply
// target, and looks for them in everything databus printed.
func TestSecretsAreNeverPrinted(t *testing.T) {
	const (
		natsPW   = "NatsPW_Secret77"
		wrongPW  = "WrongPW_Secret88"
		mysqlPW  = "MyPW_Secret55"
		targetPW = "TgtPW_Secret66"
		badTgtPW = "BadTgt_Secret99"
	)
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	src.Exec(t, "CREATE USER 'cap'@'%' IDENTIFIED BY '"+mysqlPW+"'", "GRANT ALL ON *.* TO 'cap'@'%'",
		"CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	dst.Exec(t, "CREATE USER 'tgt'@'%' IDENTIFIED BY '"+targetPW+"'", "GRANT ALL ON *.* TO 'tgt'@'%'",
		"CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	js := testenv.StartJetStream(t, embedded.Config{User: "alice", Password: natsPW})
	host := strings.TrimPrefix(js.URL, "nats://")
	env := []string{
		"DATABUS_SOURCE=sec", "DATABUS_MYSQL_ADDR=" + src.Addr(), "DATABUS_DATA_DIR=" + t.TempDir(), "DATABUS_SNAPSHOT_ON_START=false",
		"DATABUS_MYSQL_USER=cap", "DATABUS_MYSQL_PASSWORD=" + mysqlPW, "DATABUS_MYSQL_RETRY_MAX=1s",
		"DATABUS_NATS_URL=nats://alice:" + natsPW + "@" + host, "DATABUS_LOG_LEVEL=debug",
	}
	target := "tgt:" + targetPW + "@tcp(" + dst.Addr() + ")/"
	var printed strings.Builder
	record := func(name, out string) { printed.WriteString("== " + name + "\n" + out) }

	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)
	src.Exec(t, "INSERT INTO app.t VALUES (1)")
	js.Restart(t) // the reconnect is logged
	src.Exec(t, "INSERT INTO app.t VALUES (2)")

	targetFile := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(targetFile, []byte(target+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongNATS := "DATABUS_NATS_URL=nats://alice:" + wrongPW + "@" + host
	for _, c := range []struct {
		name string
		env  []string
		args []string
		ok   bool
	}{
		{"check", env, []string{"check"}, true},
		{"status", env, []string{"status"}, true},
		{"snapshot", env, []string{"snapshot"}, true},
		{"tail", env, []string{"tail", "--from", "beginning", "--count", "2"}, true},
		{"check, wrong NATS password", append(env, wrongNATS), []string{"check"}, false},
		{"status, wrong NATS password", append(env, wrongNATS), []string{"status"}, false},
		{"tail, wrong NATS password", append(env, wrongNATS), []string{"tail", "--count", "1"}, false},
		{"apply, wrong NATS password", append(env, wrongNATS), []string{"apply", "--target-file", targetFile}, false},
		{"apply, wrong target password", env, []string{"apply", "--target", "tgt:" + badTgtPW + "@tcp(" + dst.Addr() + ")/"}, false},
		{"check, wrong MySQL password", append(env, "DATABUS_MYSQL_PASSWORD="+badTgtPW), []string{"check"}, false},
		{"bad NATS URL", append(env, "DATABUS_NATS_URL=nats://alice:"+wrongPW+"@127.0.0.1:1"), []string{"status"}, false},
	} {
		code, out := runDatabus(t, c.env, c.args...)
		if (code == 0) != c.ok {
			t.Errorf("%s: exit %d:\n%s", c.name, code, out)
		}
		record(c.name, out)
	}

	// apply with the target from the environment (applying nothing), then
	// from a file, each stopped once it is at work.
	ap := startDatabus(t, append(env, "DATABUS_APPLY_TARGET="+target), "apply", "--name", "env", "--db", "none")
	testenv.Eventually(t, 30*time.Second, func() error {
		var n int
		return dst.DB(t).QueryRow("SELECT COUNT(*) FROM databus.apply_checkpoint").Scan(&n)
	})
	time.Sleep(500 * time.Millisecond)
	if code := ap.stop(t); code != 0 {
		t.Errorf("apply with DATABUS_APPLY_TARGET: exit %d:\n%s", code, ap.out.String())
	}
	record("apply, target from the environment", ap.out.String())
	ap = startDatabus(t, env, "apply", "--target-file", targetFile, "--from", "beginning")
	waitRows(t, dst, "app.t", 2)
	ap.stop(t)
	record("apply --target-file", ap.out.String())
	run.stop(t)
	record("run", run.out.String())

	all := printed.String()
	if !strings.Contains(all, "NATS reconnected") {
		t.Errorf("run did not log the reconnect this test checks:\n%s", run.out.String())
	}
	for _, pw := range []string{natsPW, wrongPW, mysqlPW, targetPW, badTgtPW} {
		if i := strings.Index(all, pw); i >= 0 {
			t.Errorf("databus printed the password %s:\n%s", pw, all[max(0, i-600):min(len(all), i+200)])
		}
	}
}

// TestEmbeddedServerRolesKeepReadersFromWriting: with users with roles, a
// reader reads events and snapshots and keeps its own consumers, but
// cannot publish events, overwrite the checkpoint or delete a snapshot,
// and capture goes on unaffected.
func TestEmbeddedServerRolesKeepReadersFromWriting(t *testing.T) {
	src := testenv.StartMariaDB(t)
	src.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)")
	env, url := captureEnv(t, src)
	// The admin authenticates with an nkey: the server knows the public
	// key, the client holds the seed.
	admin, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	adminPub, _ := admin.PublicKey()
	seed, _ := admin.Seed()
	seedFile := filepath.Join(t.TempDir(), "admin.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	env = append(env, "DATABUS_SNAPSHOT_ON_START=false", "DATABUS_NATS_AUTH_CAPTURE_PASSWORD=capPW1", "DATABUS_NATS_AUTH_READER_PASSWORD=readPW1", "DATABUS_NATS_AUTH_ADMIN_NKEY="+adminPub)
	asReader := append(env[:len(env):len(env)], "DATABUS_NATS_USER=reader", "DATABUS_NATS_PASSWORD=readPW1")
	asCapture := append(env[:len(env):len(env)], "DATABUS_NATS_USER=capture", "DATABUS_NATS_PASSWORD=capPW1")
	run := startDatabus(t, env, "run")
	waitCapturing(t, asReader, run)
	if code, out := runDatabus(t, asCapture, "snapshot"); code != 0 {
		t.Fatalf("snapshot as capture: exit %d\n%s", code, out)
	}
	if code, out := runDatabus(t, append(env[:len(env):len(env)], "DATABUS_NATS_NKEY_SEED="+seedFile), "status"); code != 0 || !strings.Contains(out, `"checkpoint"`) {
		t.Errorf("status as the admin, with an nkey: exit %d\n%s", code, out)
	}
	// The admin service: a reader may ask, only an admin may change.
	readerNC, _ := connectJS(t, url, nats.UserInfo("reader", "readPW1"))
	if infos, err := ops.Infos(t.Context(), readerNC, "e2e", ops.Waits{First: 5 * time.Second, More: 300 * time.Millisecond}); err != nil || len(infos) != 1 {
		t.Errorf("info as a reader: %+v %v", infos, err)
	}
	if _, err := readerNC.Request("$SRV.PING.databus", nil, 5*time.Second); err != nil {
		t.Errorf("nats micro ping as a reader: %v", err)
	}
	for _, who := range []struct {
		name string
		opt  nats.Option
	}{{"reader", nats.UserInfo("reader", "readPW1")}, {"capture", nats.UserInfo("capture", "capPW1")}} {
		nc, _ := connectJS(t, url, who.opt)
		for _, ep := range []string{ops.EndpointPause, ops.EndpointLogLevel, ops.EndpointSnapshot} {
			if _, err := ops.Ask(t.Context(), nc, "e2e", ep, []byte("debug"), 3*time.Second); !errors.Is(err, ops.ErrRefused) {
				t.Errorf("%s as %s: %v, want refused", ep, who.name, err)
			}
		}
	}
	adminOpt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	adminNC, _ := connectJS(t, url, adminOpt)
	for _, ep := range []string{ops.EndpointPause, ops.EndpointResume} {
		if r, err := ops.Ask(t.Context(), adminNC, "e2e", ep, nil, 5*time.Second); err != nil || r.Node == "" {
			t.Errorf("%s as the admin: %+v %v", ep, r, err)
		}
	}

	// Without credentials, or with wrong ones, nothing.
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo("reader", "nope")}} {
		if nc, err := nats.Connect(url, opts...); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Errorf("connecting with %d options: got %v, want an authorization violation", len(opts), err)
			if nc != nil {
				nc.Close()
			}
		}
	}

	_, js := connectJS(t, url, nats.UserInfo("reader", "readPW1"))
	ctx := t.Context()
	stream, err := js.Stream(ctx, sdk.StreamName("e2e"))
	if err != nil {
		t.Fatalf("a reader cannot look at the stream: %v", err)
	}
	kv, err := js.KeyValue(ctx, sdk.StateBucket("e2e"))
	if err != nil {
		t.Fatalf("a reader cannot open the state bucket: %v", err)
	}
	checkpoint, err := kv.Get(ctx, "capture.checkpoint")
	if err != nil {
		t.Fatalf("a reader cannot read the checkpoint: %v", err)
	}
	man, err := sdk.LatestSnapshot(ctx, js, "e2e")
	if err != nil {
		t.Fatalf("a reader cannot read the latest snapshot: %v", err)
	}
	obs, err := js.ObjectStore(ctx, sdk.SnapshotBucket("e2e"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := stream.Info(ctx)
	refused := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := f(ctx); err == nil {
			t.Errorf("a reader could %s", what)
		}
	}
	refused("publish an event", func(ctx context.Context) error {
		_, err := js.Publish(ctx, sdk.Subject("e2e", "app", "t", sdk.OpInsert), []byte(`{"v":1}`))
		return err
	})
	refused("overwrite the checkpoint", func(ctx context.Context) error {
		_, err := kv.Put(ctx, "capture.checkpoint", []byte(`{}`))
		return err
	})
	refused("delete a snapshot", func(ctx context.Context) error { return obs.Delete(ctx, man.ID+"/manifest.json") })
	refused("purge the stream", func(ctx context.Context) error { return stream.Purge(ctx) })
	if _, err := kv.Put(ctx, "consumer.mine.snapshot", []byte(`{}`)); err != nil {
		t.Errorf("a reader cannot write its own consumer key: %v", err)
	}
	if after, _ := stream.Info(ctx); after.State.LastSeq != info.State.LastSeq {
		t.Errorf("the stream grew from %d to %d", info.State.LastSeq, after.State.LastSeq)
	}
	if e, err := kv.Get(ctx, "capture.checkpoint"); err != nil || e.Revision() < checkpoint.Revision() || string(e.Value()) == "{}" {
		t.Errorf("the checkpoint changed: %v %s", err, e.Value())
	}
	if _, err := sdk.LatestSnapshot(ctx, js, "e2e"); err != nil {
		t.Errorf("the snapshot is gone: %v", err)
	}

	// Capture goes on; the reader reads the snapshot and the changes after
	// it through a durable consumer of its own.
	src.Exec(t, "INSERT INTO app.t VALUES (2)")
	code, out := runDatabus(t, append(asReader, "DATABUS_LOG_LEVEL=warn"), "tail", "--from", "snapshot", "--durable", "r1", "--count", "3")
	if code != 0 || strings.Count(out, `"op":"insert"`) != 2 {
		t.Errorf("tail as reader: exit %d, want the snapshot's row and the new one:\n%s", code, out)
	}

	// A reader given to databus run is refused with a clear error.
	other := append(asReader[:len(asReader):len(asReader)], "DATABUS_NATS_URL="+url, "DATABUS_DATA_DIR="+t.TempDir())
	code, out = runDatabus(t, other, "run")
	if code != 2 || !strings.Contains(out, "capture role") {
		t.Errorf("run as reader: exit %d, want 2 naming the capture role:\n%s", code, out)
	}
	select {
	case <-run.exited:
		t.Fatalf("databus run exited: %s", run.out.String())
	default:
	}
}

// TestTLSEverywhere: MariaDB servers that accept only TLS and a NATS
// server that requires TLS and client certificates; databus captures,
// snapshots, tails and applies over verified TLS, and each wrong setting
// is an error that says what to change.
func TestTLSEverywhere(t *testing.T) {
	certs := testenv.MakeCerts(t)
	tlsArgs := []string{"--ssl-cert=" + certs.ServerCert, "--ssl-key=" + certs.ServerKey, "--ssl-ca=" + certs.CA, "--require-secure-transport=ON"}
	src := testenv.StartMariaDB(t, tlsArgs...)
	dst := testenv.StartMariaDB(t, tlsArgs...)
	src.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))", "INSERT INTO app.t VALUES (1, 'one')")
	env, url := captureEnv(t, src)
	env = append(env, "DATABUS_SNAPSHOT_ON_START=false",
		"DATABUS_MYSQL_TLS_MODE=verify-identity", "DATABUS_MYSQL_TLS_CA="+certs.CA,
		"DATABUS_NATS_TLS_CA="+certs.CA, "DATABUS_NATS_TLS_CERT="+certs.ServerCert, "DATABUS_NATS_TLS_KEY="+certs.ServerKey,
		"DATABUS_NATS_TLS_VERIFY_CLIENTS=true",
		"DATABUS_NATS_TLS_CLIENT_CERT="+certs.ClientCert, "DATABUS_NATS_TLS_CLIENT_KEY="+certs.ClientKey,
	)
	with := func(extra ...string) []string { return append(env[:len(env):len(env)], extra...) }
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)
	src.Exec(t, "INSERT INTO app.t VALUES (2, 'two')")
	if code, out := runDatabus(t, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d\n%s", code, out)
	}
	src.Exec(t, "INSERT INTO app.t VALUES (3, 'three')")
	ap := startDatabus(t, with("DATABUS_APPLY_TARGET=root@tcp("+dst.Addr()+")/", "DATABUS_APPLY_TLS_MODE=verify-ca", "DATABUS_APPLY_TLS_CA="+certs.CA), "apply", "--from", "snapshot")
	testenv.Eventually(t, 30*time.Second, func() error {
		if a, b := src.Checksum(t, "app.t"), dst.Checksum(t, "app.t"); a != b {
			return fmt.Errorf("CHECKSUM TABLE source %s, target %s", a, b)
		}
		return nil
	})
	if code := ap.stop(t); code != 0 {
		t.Errorf("apply: exit %d\n%s", code, ap.out.String())
	}
	code, out := runDatabus(t, with("DATABUS_LOG_LEVEL=warn"), "tail", "--from", "beginning", "--count", "1")
	if code != 0 || !strings.Contains(out, `"op":"insert"`) {
		t.Errorf("tail over TLS: exit %d\n%s", code, out)
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("a client without TLS connected to the embedded server")
	}

	// The SDK with a TLS configuration of its own.
	ca, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sdk.Connect(t.Context(), sdk.Config{URL: url, Source: "e2e", Start: sdk.StartBeginning,
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatalf("sdk.Connect over TLS: %v", err)
	}
	testenv.Read(t, c, 1)
	c.Close()

	expired := testenv.StartMariaDB(t, "--ssl-cert="+certs.ExpiredCert, "--ssl-key="+certs.ExpiredKey, "--require-secure-transport=ON")
	for _, tc := range []struct {
		name string
		env  []string
		code int
		says []string // each in the output; a|b: a or b
	}{
		{"MySQL wants TLS, databus has it off", with("DATABUS_MYSQL_TLS_MODE=disabled"), 3, []string{"require_secure_transport", "mysql.tls.mode"}},
		{"MySQL's certificate from another CA", with("DATABUS_MYSQL_TLS_CA=" + certs.OtherCA), 3, []string{"not accepted", "mysql.tls.ca", "unknown authority"}},
		{"MySQL's certificate expired", with("DATABUS_MYSQL_ADDR="+expired.Addr(), "DATABUS_MYSQL_TLS_MODE=verify-ca"), 3, []string{"not accepted", "expired"}},
		{"verify-ca without a CA", with("DATABUS_MYSQL_TLS_CA="), 2, []string{"mysql.tls.ca"}},
		{"NATS without a client certificate", with("DATABUS_NATS_TLS_CLIENT_CERT=", "DATABUS_NATS_TLS_CLIENT_KEY="), 3, []string{"FAIL nats reachable", "certificate required|closed by remote after TLS handshake", "nats.tls.client_cert"}},
		{"NATS's certificate from another CA", with("DATABUS_NATS_TLS_CA="+certs.OtherCA, "DATABUS_NATS_TLS_VERIFY_CLIENTS=false"), 3, []string{"FAIL nats reachable", "unknown authority"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"check"}
			code, out := runDatabus(t, append(tc.env, "DATABUS_NATS_URL="+url), args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, s := range tc.says {
				if !slices.ContainsFunc(strings.Split(s, "|"), func(alt string) bool { return strings.Contains(out, alt) }) {
					t.Errorf("output does not say %q:\n%s", s, out)
				}
			}
		})
	}
}
