package snapshot

import (
	"context"
	"time"

	"github.com/databus/databus/sdk"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SetSnapshotViewOpenedHook makes every snapshot call f right after it
// opened its read view, before it locks the tables' schema; nil removes it.
func SetSnapshotViewOpenedHook(f func()) { testHookViewOpened = f }

// SetCommitBlockWait changes how long a snapshot waits for its commit
// block until the test ends.
func SetCommitBlockWait(t interface{ Cleanup(func()) }, d time.Duration) {
	old := commitBlockWait
	commitBlockWait = d
	t.Cleanup(func() { commitBlockWait = old })
}

// OpenReadViews opens a snapshot's read view on a metadata session and
// parallel readers of the server cfg names, as a snapshot does, and
// returns a function per session that runs a query of one value there,
// the GTID set the view matches and a function that ends it.
func OpenReadViews(ctx context.Context, cfg Config, parallel int) ([]func(q string) (string, error), string, func(), error) {
	src, err := openSource(ctx, cfg.MySQL, parallel)
	if err != nil {
		return nil, "", nil, err
	}
	s := &snapshotter{cfg: cfg, opt: Options{Parallel: parallel}}
	if err := s.begin(ctx, src); err != nil {
		src.close(ctx)
		return nil, "", nil, err
	}
	v := src.v
	queries := []func(string) (string, error){func(q string) (string, error) {
		var val string
		err := v.meta.QueryRowContext(ctx, q).Scan(&val)
		return val, err
	}}
	for _, r := range v.readers {
		queries = append(queries, func(q string) (string, error) {
			var val string
			err := r.Query(ctx, q, func(vals [][]byte) error {
				val = string(vals[0])
				return nil
			})
			return val, err
		})
	}
	return queries, s.man.GTIDSet, func() { src.close(ctx) }, nil
}

// RemovePartial removes, from source's snapshot bucket, the objects of
// incomplete snapshots other than id, as a snapshot with that id does
// while it reads.
func RemovePartial(ctx context.Context, nc *nats.Conn, source, id string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	obs, err := js.ObjectStore(ctx, sdk.SnapshotBucket(source))
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, sdk.StateBucket(source))
	if err != nil {
		return err
	}
	s := &snapshotter{obs: obs, kv: kv, man: sdk.Manifest{ID: id}}
	_, err = s.removePartial(ctx)
	return err
}
