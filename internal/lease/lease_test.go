package lease_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/lease"
	"github.com/databus/databus/internal/testenv"
)

// cutKV is a bucket that a test can cut off, as a network partition or a
// frozen process would: every operation fails while cut.
type cutKV struct {
	jetstream.KeyValue
	cut atomic.Bool
}

var errCut = errors.New("cut off")

func (k *cutKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.cut.Load() {
		return nil, errCut
	}
	return k.KeyValue.Get(ctx, key)
}

func (k *cutKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if k.cut.Load() {
		return 0, errCut
	}
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k *cutKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if k.cut.Load() {
		return 0, errCut
	}
	return k.KeyValue.Update(ctx, key, value, rev)
}

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	kv, _ := bucketAndConn(t)
	return kv
}

func bucketAndConn(t *testing.T) (jetstream.KeyValue, *nats.Conn) {
	t.Helper()
	nc := testenv.StartJetStream(t).Conn(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "lease_test", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv, nc
}

// node runs an elector and records what it sees.
type node struct {
	name    string
	kv      *cutKV
	leading atomic.Pointer[lease.Lease]
	terms   chan *lease.Lease
	lostCh  chan error
	done    chan error
	cancel  context.CancelFunc
}

func startNode(t *testing.T, kv jetstream.KeyValue, name string, ttl time.Duration, onLead func(*lease.Lease)) *node {
	t.Helper()
	n := &node{name: name, kv: &cutKV{KeyValue: kv}, terms: make(chan *lease.Lease, 16), lostCh: make(chan error, 16), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	n.cancel = cancel
	e := lease.New(lease.Config{Key: "leader", Node: name, TTL: ttl}, n.kv)
	go func() {
		n.done <- e.Run(ctx, func(ctx context.Context, l *lease.Lease) error {
			if onLead != nil {
				onLead(l)
			}
			n.leading.Store(l)
			n.terms <- l
			<-ctx.Done()
			n.leading.Store(nil)
			n.lostCh <- context.Cause(ctx)
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-n.done
	})
	return n
}

func waitLead(t *testing.T, n *node, within time.Duration) *lease.Lease {
	t.Helper()
	select {
	case l := <-n.terms:
		return l
	case <-time.After(within):
		t.Fatalf("%s did not become the leader within %v", n.name, within)
		return nil
	}
}

func TestStandbyTakesOverOnlyAfterTheLeaderCannotWrite(t *testing.T) {
	kv, nc := bucketAndConn(t)
	const ttl = 600 * time.Millisecond
	a := startNode(t, kv, "a", ttl, nil)
	la := waitLead(t, a, 10*time.Second)

	// While a renews, b stands by: across several lease durations.
	var mu sync.Mutex
	var aValidWhenBLed []error
	b := startNode(t, kv, "b", ttl, func(*lease.Lease) {
		mu.Lock()
		defer mu.Unlock()
		aValidWhenBLed = append(aValidWhenBLed, la.Check())
	})
	select {
	case <-b.terms:
		t.Fatal("b took the lease while a was renewing it")
	case <-time.After(5 * ttl):
	}
	if err := la.Check(); err != nil {
		t.Fatalf("a's lease while a renews it: %v", err)
	}

	// a is cut off (frozen, partitioned): its lease ends by its own clock
	// before b may take over. Its work waits (Wait) as long as a cannot
	// tell whether another node took over.
	waited := make(chan error, 1)
	a.kv.cut.Store(true)
	lb := waitLead(t, b, 10*time.Second)
	mu.Lock()
	if len(aValidWhenBLed) != 1 || !errors.Is(aValidWhenBLed[0], lease.ErrLost) {
		t.Errorf("a's lease when b began to lead: %v, want %v", aValidWhenBLed, lease.ErrLost)
	}
	mu.Unlock()
	go func() { waited <- la.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("a's Wait returned %v while a was cut off and b led", err)
	case <-time.After(3 * ttl):
	}
	if lb.Term() <= la.Term() {
		t.Errorf("b's term %d, a's %d: want higher", lb.Term(), la.Term())
	}

	// Back, a finds that b took over: its work ends and it stands by,
	// while b keeps renewing.
	a.kv.cut.Store(false)
	select {
	case err := <-waited:
		if !errors.Is(err, lease.ErrLost) {
			t.Errorf("a's Wait: %v, want %v", err, lease.ErrLost)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a's Wait did not return once a could reach the bucket again")
	}
	select {
	case cause := <-a.lostCh:
		if !errors.Is(cause, lease.ErrLost) {
			t.Errorf("a's work ended with cause %v, want %v", cause, lease.ErrLost)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a's work was not stopped")
	}
	select {
	case <-a.terms:
		t.Fatal("a took the lease back while b was renewing it")
	case <-time.After(5 * ttl):
	}
	if err := lb.Check(); err != nil {
		t.Fatalf("b's lease: %v", err)
	}
	r, err := lease.ReadFromLeader(t.Context(), nc, kv.Bucket(), "leader")
	if err != nil || r == nil || r.Node != "b" || r.Term != lb.Term() {
		t.Fatalf("lease record %+v (%v), want b's of term %d", r, err, lb.Term())
	}
}

func TestStoppingHandsTheLeaseOverAtOnce(t *testing.T) {
	kv := bucket(t)
	// A lease far longer than the test: only a release lets b lead.
	const ttl = 10 * time.Minute
	a := startNode(t, kv, "a", ttl, nil)
	la := waitLead(t, a, 10*time.Second)
	b := startNode(t, kv, "b", ttl, nil)
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("a's Run: %v", err)
	}
	a.done <- nil // for the cleanup
	if err := la.Check(); !errors.Is(err, lease.ErrLost) {
		t.Errorf("a's lease after it stopped: %v, want %v", err, lease.ErrLost)
	}
	waitLead(t, b, 30*time.Second)
}

func TestLeaseCutOffBrieflyIsRenewedAndWorkGoesOn(t *testing.T) {
	kv := bucket(t)
	const ttl = 600 * time.Millisecond
	a := startNode(t, kv, "a", ttl, nil)
	la := waitLead(t, a, 10*time.Second)
	// No other node: when the bucket answers again, nobody took the lease
	// and a renews it, in the same term, without stopping its work.
	a.kv.cut.Store(true)
	testenv.Eventually(t, 10*time.Second, func() error {
		if la.Check() == nil {
			return errors.New("a's lease has not expired yet")
		}
		return nil
	})
	a.kv.cut.Store(false)
	if err := la.Wait(); err != nil {
		t.Fatalf("a's Wait after the bucket came back: %v", err)
	}
	select {
	case cause := <-a.lostCh:
		t.Fatalf("a's work ended (%v) though nobody took the lease", cause)
	case <-time.After(3 * ttl):
	}
}

func TestLeaderWorkErrorIsReturnedAndReleasesTheLease(t *testing.T) {
	kv, nc := bucketAndConn(t)
	boom := errors.New("boom")
	e := lease.New(lease.Config{Key: "leader", Node: "a", TTL: time.Minute}, kv)
	err := e.Run(t.Context(), func(context.Context, *lease.Lease) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want %v", err, boom)
	}
	r, err := lease.ReadFromLeader(t.Context(), nc, kv.Bucket(), "leader")
	if err != nil || r == nil || !r.Released {
		t.Fatalf("lease record after the work failed: %+v (%v), want released", r, err)
	}
}

// An elector that reads the lease from the bucket's leader (as databus run
// does) leads, and ReadFromLeader shows its record, or none once deleted.
func TestLeaseReadFromTheBucketsLeader(t *testing.T) {
	kv, nc := bucketAndConn(t)
	if r, err := lease.ReadFromLeader(t.Context(), nc, kv.Bucket(), "leader"); err != nil || r != nil {
		t.Fatalf("before any lease: %+v, %v; want none", r, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	led := make(chan *lease.Lease, 1)
	done := make(chan error, 1)
	e := lease.New(lease.Config{Key: "leader", Node: "a", TTL: time.Minute, Conn: nc}, kv)
	go func() {
		done <- e.Run(ctx, func(ctx context.Context, l *lease.Lease) error {
			led <- l
			<-ctx.Done()
			return nil
		})
	}()
	var l *lease.Lease
	select {
	case l = <-led:
	case <-time.After(10 * time.Second):
		t.Fatal("no lease within 10s")
	}
	r, err := lease.ReadFromLeader(t.Context(), nc, kv.Bucket(), "leader")
	if err != nil || r == nil || r.Node != "a" || r.Term != l.Term() || r.Released {
		t.Fatalf("lease read from the leader: %+v, %v; want a's of term %d", r, err, l.Term())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), "leader"); err != nil {
		t.Fatal(err)
	}
	if r, err := lease.ReadFromLeader(t.Context(), nc, kv.Bucket(), "leader"); err != nil || r != nil {
		t.Fatalf("after the lease was deleted: %+v, %v; want none", r, err)
	}
}
