package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
)

type snapshotLock struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Heartbeat time.Time `json:"heartbeat"`
}

// lock makes this the only snapshot of the source being taken. A lock whose
// holder stopped renewing it (killed) is taken over.
func (s *snapshotter) lock(ctx context.Context) (unlock func(), err error) {
	host, _ := os.Hostname()
	me := snapshotLock{ID: s.man.ID, Host: host, PID: os.Getpid()}
	value := func() []byte {
		me.Heartbeat = time.Now().UTC()
		b, _ := json.Marshal(me)
		return b
	}
	rev, err := s.kv.Create(ctx, bus.SnapshotLockKey, value())
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := s.kv.Get(ctx, bus.SnapshotLockKey)
		if gerr != nil {
			return nil, fmt.Errorf("reading the snapshot lock: %w", gerr)
		}
		var other snapshotLock
		_ = json.Unmarshal(e.Value(), &other)
		if age := time.Since(other.Heartbeat); age < lockStaleAfter {
			return nil, fmt.Errorf("%w: snapshot %s of source %s, started by pid %d on %s, was alive %s ago; wait for it to finish",
				ErrRunning, other.ID, s.cfg.Source, other.PID, other.Host, age.Round(time.Second))
		}
		rev, err = s.kv.Update(ctx, bus.SnapshotLockKey, value(), e.Revision())
	}
	if err != nil {
		return nil, fmt.Errorf("taking the snapshot lock: %w", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lockHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r, err := s.kv.Update(ctx, bus.SnapshotLockKey, value(), rev); err == nil {
					rev = r
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		_ = s.kv.Delete(context.WithoutCancel(ctx), bus.SnapshotLockKey, jetstream.LastRevision(rev))
	}, nil
}
