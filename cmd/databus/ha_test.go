package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/lease"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// What the HA harness does to a node in a cycle.
const (
	haKillLeader = iota
	haFreezeLeader
	haKillStandby
	haFaults
)

var haFaultNames = [haFaults]string{"kill -9 the leader node", "SIGSTOP the leader node past its lease", "kill -9 a standby node"}

// haSource is the source name of the HA harness.
const haSource = "ha"

// haNode is one `databus run` of the HA harness, whose embedded NATS
// server is a member of the three-node cluster.
type haNode struct {
	name string
	env  []string
	p    *proc
	down bool // killed or frozen by the harness
}

// TestHAHarness runs three `databus run` nodes on localhost, each with an
// embedded NATS server in one JetStream cluster and the stream, state
// bucket and snapshots replicated three times, and `databus apply` into a
// target connected to all three, under the crash harness's write load. In
// each of HA_CYCLES cycles (3 by default, one of each fault; `make soak`
// runs more) it kills -9 the node that leads capture (its NATS server and
// its capture) and restarts it later, freezes the leader with SIGSTOP for
// longer than its lease and wakes it, or kills -9 a standby. After the
// load the target must equal the source (CHECKSUM TABLE and the ledger:
// nothing lost, nothing applied twice, commit order kept). It reports the
// failover times: from the fault to the first event published under the
// new leader.
func TestHAHarness(t *testing.T) {
	seed, cycles := harnessParams(t, "HA_CYCLES", 3)
	t.Logf("HA harness: seed %d, %d cycles (CRASH_SEED=%d HA_CYCLES=%d repeats the schedule and the load)", seed, cycles, seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 2))
	began := time.Now()
	logs := newCrashLogs(t)
	src, dst := startMirrorPair(t, logs)

	const leaseTTL = 3 * time.Second
	var clientURLs, routes []string
	clusterPorts := make([]int, 3)
	clientPorts := make([]int, 3)
	for i := range 3 {
		clientPorts[i], clusterPorts[i] = testenv.FreePort(t), testenv.FreePort(t)
		clientURLs = append(clientURLs, "nats://127.0.0.1:"+strconv.Itoa(clientPorts[i]))
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(clusterPorts[i]))
	}
	nodes := make([]*haNode, 3)
	for i := range nodes {
		n := &haNode{name: "node" + strconv.Itoa(i+1)}
		n.env = []string{
			"DATABUS_SOURCE=" + haSource,
			"DATABUS_MYSQL_ADDR=" + src.Addr(),
			"DATABUS_MYSQL_RETRY_MAX=1s",
			"DATABUS_DATA_DIR=" + filepath.Join(t.TempDir(), n.name),
			"DATABUS_NATS_LISTEN=127.0.0.1:" + strconv.Itoa(clientPorts[i]),
			"DATABUS_NATS_SERVER_NAME=" + n.name,
			"DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:" + strconv.Itoa(clusterPorts[i]),
			"DATABUS_NATS_CLUSTER_ROUTES=" + strings.Join(routes, ","),
			"DATABUS_NATS_CLUSTER_USER=route",
			"DATABUS_NATS_CLUSTER_PASSWORD=route-secret",
			"DATABUS_NATS_STREAM_REPLICAS=3",
			"DATABUS_CAPTURE_LEASE=" + leaseTTL.String(),
			"DATABUS_LOG_LEVEL=info",
		}
		n.p = logs.track(n.name, startDatabus(t, n.env, "run"))
		nodes[i] = n
	}
	client := []string{"DATABUS_SOURCE=" + haSource, "DATABUS_NATS_URL=" + strings.Join(clientURLs, ","), "DATABUS_LOG_LEVEL=info"}
	nc, err := nats.Connect(strings.Join(clientURLs, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	alive := func(when string) {
		t.Helper()
		for _, n := range nodes {
			if n.down {
				continue
			}
			select {
			case <-n.p.exited:
				t.Fatalf("%s: %s exited by itself with %d (seed %d, logs in %s):\n%s", when, n.name, n.p.code, seed, logs.dir, tail(n.p.out.String(), 60))
			default:
			}
		}
	}
	first := waitLeader(t, js, 0, alive)
	t.Logf("%s leads capture (term %d)", first.Node, first.Term)
	waitEvents(t, src, js)
	checkClusterStatus(t, client, first.Node)

	applyArgs := []string{"apply", "--target", dst.DSN(""), "--from", "now", "--progress", "1s"}
	ap := logs.track("apply", startDatabus(t, client, applyArgs...))
	testenv.Eventually(t, 60*time.Second, func() error { // "now" is pinned on the target
		var seq uint64
		return dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&seq)
	})
	// A reader given one node of the cluster (node1, which the harness
	// kills at least once): it learns the others from the server and
	// carries on when its node dies.
	tailEnv := append(slices.Clone(client), "DATABUS_NATS_URL="+clientURLs[0])
	s, err := js.Stream(t.Context(), sdk.StreamName(haSource))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	from := strconv.FormatUint(info.State.LastSeq+1, 10) // before the writer's first transaction
	tl := logs.track("tail", startDatabus(t, tailEnv, "tail", "--from", from, "--table", "app.ledger"))
	// A steady load the three replicas keep up with on a small machine:
	// a node that comes back must catch up before the next fault.
	w := startCrashWriter(t, src, seed, 150*time.Millisecond)

	var failovers [haFaults][]time.Duration // by fault
	var faults [haFaults]int
	schedule := &faultSchedule{rng: rng, n: haFaults}
	killed := map[string]bool{}
	for c := 0; c < cycles || !killed[nodes[0].name]; c++ {
		fault := schedule.next()
		w.pause(t, rng, c, time.Second, 2*time.Second)
		alive(fmt.Sprintf("before cycle %d", c+1))
		// One fault at a time: the cluster has healed from the last one.
		healing := time.Now()
		why := waitHealthy(t, js, alive)
		if d := time.Since(healing); d > time.Second {
			t.Logf("cycle %d: the cluster healed in %v (last: %s)", c+1, d.Round(100*time.Millisecond), why)
		}
		rec := waitLeader(t, js, 0, alive)
		li := slices.IndexFunc(nodes, func(n *haNode) bool { return n.name == rec.Node })
		if li < 0 {
			t.Fatalf("the lease names node %q, which is not one of the harness's", rec.Node)
		}
		leader := nodes[li]
		if c >= cycles { // an extra cycle: node1 has not died yet
			fault = haKillStandby
			if li == 0 {
				fault = haKillLeader
			}
		}
		t.Logf("cycle %d: %s (%s leads, term %d) after transaction %d", c+1, haFaultNames[fault], leader.name, rec.Term, w.committed.Load())
		switch fault {
		case haKillLeader:
			leader.down = true
			leader.p.kill()
			killed[leader.name] = true
			at := time.Now()
			d := waitFailover(t, js, rec.Term, at, alive)
			t.Logf("cycle %d: failover in %v", c+1, d.Round(10*time.Millisecond))
			failovers[fault] = append(failovers[fault], d)
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			leader.p = logs.track(leader.name, startDatabus(t, leader.env, "run"))
			leader.down = false
		case haFreezeLeader:
			leader.down = true
			if err := leader.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			d := waitFailover(t, js, rec.Term, at, alive)
			t.Logf("cycle %d: failover in %v", c+1, d.Round(10*time.Millisecond))
			failovers[fault] = append(failovers[fault], d)
			// Frozen past its lease in any case, then woken.
			time.Sleep(max(0, 2*leaseTTL-time.Since(at)))
			newer := waitLeader(t, js, rec.Term, alive)
			if err := leader.p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			leader.down = false
			// Awake, the old leader stands by: the new one keeps its lease.
			testenv.Eventually(t, time.Minute, func() error {
				if !strings.Contains(leader.p.out.String(), "standing by") {
					return fmt.Errorf("%s, woken, has not logged that it stands by:\n%s", leader.name, tail(leader.p.out.String(), 20))
				}
				return nil
			})
			time.Sleep(2 * leaseTTL)
			if now := waitLeader(t, js, 0, alive); now.Term != newer.Term || now.Node != newer.Node {
				t.Errorf("cycle %d: after %s woke the lease went from %s (term %d) to %s (term %d)", c+1, leader.name, newer.Node, newer.Term, now.Node, now.Term)
			}
		case haKillStandby:
			s := nodes[(li+1+rng.IntN(2))%3]
			if li != 0 && !killed[nodes[0].name] {
				s = nodes[0]
			}
			s.down = true
			s.p.kill()
			killed[s.name] = true
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			s.p = logs.track(s.name, startDatabus(t, s.env, "run"))
			s.down = false
			if now := waitLeader(t, js, 0, alive); now.Term != rec.Term {
				t.Errorf("cycle %d: killing standby %s changed the lease from term %d to %d (%s)", c+1, s.name, rec.Term, now.Term, now.Node)
			}
		}
		faults[fault]++
	}
	if err := w.stop(); err != nil {
		t.Fatalf("writer (seed %d): %v", seed, err)
	}
	alive("after the load")
	last := w.committed.Load()
	rep := verifyMirror(t, src, dst, last, seed, func() error {
		alive("catching up")
		for _, p := range []*proc{ap, tl} {
			select {
			case <-p.exited:
				t.Fatalf("%s exited with %d:\n%s", strings.Join(p.cmd.Args, " "), p.code, tail(p.out.String(), 60))
			default:
			}
		}
		return nil
	}, func() string {
		return fmt.Sprintf("logs in %s\napply output (tail):\n%s", logs.dir, tail(ap.out.String(), 40))
	})
	checkTailedLedger(t, tl, last)
	t.Logf("HA harness report: seed %d, %d cycles (kill -9 leader %d, SIGSTOP leader %d, kill -9 standby %d); %d transactions (%d row operations) checked; "+
		"losses %d, duplicates %d; failover (fault to first event under the new leader): kill -9 of the leader node %s, SIGSTOP of the leader node %s; %v",
		seed, cycles, faults[haKillLeader], faults[haFreezeLeader], faults[haKillStandby], rep.txns, w.rows.Load(), rep.missing, rep.duplicates,
		quantiles(failovers[haKillLeader]), quantiles(failovers[haFreezeLeader]), time.Since(began).Round(time.Second))
}

// quantiles describes durations as "p50 X, max Y over N".
func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "not measured"
	}
	slices.Sort(d)
	return fmt.Sprintf("p50 %v, max %v over %d", d[len(d)/2].Round(10*time.Millisecond), d[len(d)-1].Round(10*time.Millisecond), len(d))
}

// waitLeader waits until the capture lease is held with a term above
// after, and returns it.
func waitLeader(t *testing.T, js jetstream.JetStream, after uint64, alive func(string)) *lease.Record {
	t.Helper()
	var rec *lease.Record
	testenv.Eventually(t, 2*time.Minute, func() error {
		alive("waiting for a leader")
		r, err := leaseRecord(t, js)
		switch {
		case err != nil:
			return err
		case r == nil || r.Released || r.Term <= after:
			return fmt.Errorf("no lease above term %d: %+v", after, r)
		}
		rec = r
		return nil
	})
	return rec
}

// leaseRecord reads the capture lease from the state bucket's leader (a
// direct get may answer from a replica that lags).
func leaseRecord(t *testing.T, js jetstream.JetStream) (*lease.Record, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	return lease.ReadFromLeader(ctx, js.Conn(), sdk.StateBucket(haSource), bus.LeaderKey)
}

// waitHealthy waits until the stream, the state bucket and the snapshot
// bucket each have a leader, not the node that leads capture, and three
// current replicas: the deployment has settled after the last fault. It
// returns the last reason it waited for.
func waitHealthy(t *testing.T, js jetstream.JetStream, alive func(string)) string {
	t.Helper()
	var why string
	testenv.Eventually(t, 3*time.Minute, func() (err error) {
		defer func() {
			if err != nil {
				why = err.Error()
			}
		}()
		alive("waiting for the cluster to heal")
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		rec, err := leaseRecord(t, js)
		if err != nil || rec == nil {
			return fmt.Errorf("no lease: %v", err)
		}
		events, state, snapshots := bus.Streams(haSource)
		for _, name := range []string{events, state, snapshots} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return fmt.Errorf("stream %s: %w", name, err)
			}
			cl := s.CachedInfo().Cluster
			if cl == nil || cl.Leader == "" || len(cl.Replicas) != 2 {
				return fmt.Errorf("stream %s: cluster %+v", name, cl)
			}
			if cl.Leader == rec.Node {
				return fmt.Errorf("stream %s is led by %s, which leads capture: not moved yet", name, rec.Node)
			}
			for _, p := range cl.Replicas {
				if !p.Current || p.Offline || p.Active > 3*time.Second {
					return fmt.Errorf("stream %s: replica %s is not current (%+v)", name, p.Name, p)
				}
			}
		}
		return nil
	})
	return why
}

// waitFailover waits until a leader of a term above old has published its
// leader message and an event after it, and returns the time since at.
func waitFailover(t *testing.T, js jetstream.JetStream, old uint64, at time.Time, alive func(string)) time.Duration {
	t.Helper()
	var took time.Duration
	testenv.Eventually(t, 2*time.Minute, func() error {
		alive("waiting for the new leader's first event")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, sdk.StreamName(haSource))
		if err != nil {
			return err
		}
		m, err := s.GetLastMsgForSubject(ctx, sdk.LeaderSubject(haSource))
		if err != nil {
			return err
		}
		var lm capture.LeaderMessage
		if err := json.Unmarshal(m.Data, &lm); err != nil {
			return err
		}
		if lm.Term <= old {
			return fmt.Errorf("the newest leader message is of term %d", lm.Term)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.LastSeq <= m.Sequence {
			return errors.New("no event after the new leader's message yet")
		}
		took = time.Since(at)
		return nil
	})
	return took
}

// waitEvents writes rows into a table of the source alone until the
// stream has an event: capture runs. The target, whose apply starts
// later, never sees them.
func waitEvents(t *testing.T, src *testenv.MariaDB, js jetstream.JetStream) {
	t.Helper()
	src.Exec(t, "CREATE TABLE app.probe (id INT AUTO_INCREMENT PRIMARY KEY)")
	testenv.Eventually(t, 2*time.Minute, func() error {
		src.Exec(t, "INSERT INTO app.probe VALUES ()")
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, sdk.StreamName(haSource))
		if err != nil {
			return err
		}
		if _, err := s.GetLastMsgForSubject(ctx, sdk.EventSubjects(haSource)); err != nil {
			return fmt.Errorf("no event in the stream yet: %w", err)
		}
		return nil
	})
}

// checkTailedLedger waits until tail has printed the ledger row of every
// transaction from 1 to last, and checks that it printed each once, in
// commit order.
func checkTailedLedger(t *testing.T, tl *proc, last int64) {
	t.Helper()
	var got []int64
	testenv.Eventually(t, 2*time.Minute, func() error {
		got = got[:0]
		for line := range strings.Lines(tl.out.String()) {
			if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "\n") {
				continue // a log line, or a line being written
			}
			dec := json.NewDecoder(strings.NewReader(line))
			dec.UseNumber()
			var ev sdk.Event
			if err := dec.Decode(&ev); err != nil {
				return fmt.Errorf("tail printed %q: %w", line, err)
			}
			n, err := strconv.ParseInt(fmt.Sprint(ev.After["txn"]), 10, 64) // BIGINT: a JSON string
			if err != nil {
				return fmt.Errorf("tail printed a ledger row without a txn: %+v", ev.After)
			}
			got = append(got, n)
		}
		if len(got) == 0 || got[len(got)-1] != last {
			return fmt.Errorf("tail has printed %d ledger rows, the last of transaction %v, want up to %d", len(got), got[max(0, len(got)-1):], last)
		}
		return nil
	})
	for i, n := range got {
		if n != int64(i+1) {
			t.Errorf("tail printed the ledger row of transaction %d where %d was due: lost, repeated or out of order", n, i+1)
			return
		}
	}
}

// checkClusterStatus checks that `databus status` shows leader leading
// capture, the three nodes (one leader, two standbys), and the stream and
// both buckets replicated on three servers.
func checkClusterStatus(t *testing.T, env []string, leader string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		code, out := runDatabus(t, env, "status")
		if code != 0 {
			return fmt.Errorf("status exited with %d:\n%s", code, out)
		}
		var st struct {
			Capture struct {
				Leader string     `json:"leader"`
				Nodes  []bus.Node `json:"nodes"`
			} `json:"capture"`
			Cluster map[string]struct {
				Leader    string `json:"leader"`
				Replicas  int    `json:"replicas"`
				Followers []struct {
					Server string `json:"server"`
				} `json:"followers"`
			} `json:"cluster"`
		}
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
			return fmt.Errorf("status output: %v\n%s", err, out)
		}
		if st.Capture.Leader != leader {
			return fmt.Errorf("status shows %q leading capture, want %q:\n%s", st.Capture.Leader, leader, out)
		}
		roles := map[string]string{}
		for _, n := range st.Capture.Nodes {
			roles[n.Name] = n.Role
		}
		if len(roles) != 3 || roles[leader] != "leader" {
			return fmt.Errorf("status shows nodes %v, want node1-3 with %s the leader:\n%s", roles, leader, out)
		}
		for name, r := range roles {
			if name != leader && r != "standby" {
				return fmt.Errorf("status shows %s as %q, want standby", name, r)
			}
		}
		for _, key := range []string{"stream", "state_bucket", "snapshot_bucket"} {
			c := st.Cluster[key]
			if c.Replicas != 3 || c.Leader == "" || len(c.Followers) != 2 {
				return fmt.Errorf("status shows %s as %+v, want 3 replicas, a leader and 2 followers:\n%s", key, c, out)
			}
		}
		return nil
	})
}

// Two `databus run` against one external NATS server (no embedded
// servers, as with an external cluster): one captures, the other stands
// by; when the leader is killed the standby takes over, and the stream
// holds every change once.
func TestStandbyTakesOverWithExternalNATS(t *testing.T) {
	logs := newCrashLogs(t)
	src := testenv.StartMariaDB(t)
	src.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	ns := startNATSServer(t, logs)
	env := func(name string) []string {
		return []string{"DATABUS_SOURCE=ext", "DATABUS_MYSQL_ADDR=" + src.Addr(), "DATABUS_MYSQL_RETRY_MAX=1s", "DATABUS_NATS_URL=" + ns.url,
			"DATABUS_NATS_SERVER_NAME=" + name, "DATABUS_DATA_DIR=" + t.TempDir(), "DATABUS_LOG_LEVEL=info"}
	}
	nodes := map[string]*proc{"a": logs.track("a", startDatabus(t, env("a"), "run")), "b": logs.track("b", startDatabus(t, env("b"), "run"))}
	nc, js := connectJS(t, ns.url)
	leaderOf := func(after uint64) *lease.Record {
		t.Helper()
		var rec *lease.Record
		testenv.Eventually(t, time.Minute, func() error {
			r, err := lease.ReadFromLeader(t.Context(), nc, sdk.StateBucket("ext"), bus.LeaderKey)
			if err != nil || r == nil || r.Released || r.Term <= after {
				return fmt.Errorf("lease %+v (%v), want one above term %d", r, err, after)
			}
			rec = r
			return nil
		})
		return rec
	}
	first := leaderOf(0)
	standby := map[string]string{"a": "b", "b": "a"}[first.Node]
	testenv.Eventually(t, time.Minute, func() error {
		if out := nodes[standby].out.String(); !strings.Contains(out, "standing by: another node captures") {
			return fmt.Errorf("%s has not said it stands by:\n%s", standby, tail(out, 20))
		}
		return nil
	})
	// The snapshot on start follows the lease: the leader takes it, the
	// standby does not.
	testenv.Eventually(t, time.Minute, func() error {
		_, err := sdk.LatestSnapshot(t.Context(), js, "ext")
		return err
	})
	if ids, err := sdk.SnapshotIDs(t.Context(), js, "ext"); err != nil || len(ids) != 1 {
		t.Errorf("snapshots %v (%v), want the leader's one", ids, err)
	}
	if out := nodes[standby].out.String(); strings.Contains(out, "snapshot starting") {
		t.Errorf("standby %s took a snapshot:\n%s", standby, tail(out, 20))
	}
	src.Exec(t, "INSERT INTO app.t VALUES (1)")
	testenv.WaitEvents(t, js, "ext", 1)
	nodes[first.Node].kill()
	if next := leaderOf(first.Term); next.Node != standby {
		t.Fatalf("after %s was killed the lease went to %q, want %s", first.Node, next.Node, standby)
	}
	src.Exec(t, "INSERT INTO app.t VALUES (2)", "INSERT INTO app.t VALUES (3)")
	testenv.WaitEvents(t, js, "ext", 3)
	c, err := sdk.Connect(t.Context(), sdk.Config{Conn: nc, Source: "ext", Start: sdk.StartBeginning})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	evs := testenv.ReadUntilQuiet(t, c, 2*time.Second)
	var ids []string
	for _, ev := range evs {
		ids = append(ids, fmt.Sprint(ev.After["id"]))
	}
	if got := strings.Join(ids, ","); got != "1,2,3" {
		t.Errorf("events in the stream: %s, want 1,2,3 once each", got)
	}
}
