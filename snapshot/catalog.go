package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/sdk"
)

// catalog is what the snapshot bucket holds: every object, and the
// snapshots they belong to, each with whether it is complete (has its
// manifest).
type catalog struct {
	objects   []*jetstream.ObjectInfo
	snapshots map[string]bool
}

// listCatalog lists the snapshot bucket, once for everything a cleanup
// removes: a listing takes tens of milliseconds.
func (s *snapshotter) listCatalog(ctx context.Context) (catalog, error) {
	c := catalog{snapshots: map[string]bool{}}
	objs, err := s.obs.List(ctx)
	switch {
	case errors.Is(err, jetstream.ErrNoObjectsFound):
		return c, nil
	case err != nil:
		return c, fmt.Errorf("listing the snapshot bucket: %w", err)
	}
	c.objects = objs
	for _, o := range objs {
		id, manifest := sdk.SnapshotOfObject(o.Name)
		c.snapshots[id] = c.snapshots[id] || manifest
	}
	return c, nil
}

// removePartial deletes what interrupted snapshots left behind; this
// snapshot's own objects, which it may be writing, stay. It returns what
// the bucket held, for prune: while this snapshot holds the lock, nothing
// else adds or removes a snapshot.
func (s *snapshotter) removePartial(ctx context.Context) (catalog, error) {
	c, err := s.listCatalog(ctx)
	if err != nil {
		return c, err
	}
	for id, complete := range c.snapshots {
		if !complete && id != s.man.ID {
			s.removeSnapshot(ctx, id, c.objects)
			delete(c.snapshots, id)
		}
	}
	return c, nil
}

// removeSnapshot deletes every object of snapshot id among objs (all of
// the bucket's when objs is nil), the manifest first so that it is never
// seen half deleted.
func (s *snapshotter) removeSnapshot(ctx context.Context, id string, objs []*jetstream.ObjectInfo) {
	_ = s.obs.Delete(ctx, sdk.ManifestName(id))
	_ = s.kv.Delete(ctx, sdk.SnapshotDamageKey(id))
	if objs == nil {
		c, err := s.listCatalog(ctx)
		if err != nil {
			return
		}
		objs = c.objects
	}
	// Each deletion is a few round trips to the NATS server: several at
	// once.
	var g errgroup.Group
	g.SetLimit(8)
	for _, o := range objs {
		if strings.HasPrefix(o.Name, id+"/") && o.Name != sdk.ManifestName(id) {
			g.Go(func() error {
				_ = s.obs.Delete(ctx, o.Name)
				return nil
			})
		}
	}
	_ = g.Wait()
}

// prune keeps the newest opt.Keep sound complete snapshots and any a
// durable consumer is still loading; damaged snapshots go too. c is the
// bucket as removePartial left it, before this snapshot was complete.
func (s *snapshotter) prune(ctx context.Context, c catalog) error {
	c.snapshots[s.man.ID] = true
	var sound, damaged []string
	for id, complete := range c.snapshots {
		if !complete {
			continue
		}
		if d, err := sdk.ReadSnapshotDamage(ctx, s.kv, id); err == nil && d != nil {
			damaged = append(damaged, id)
		} else {
			sound = append(sound, id)
		}
	}
	slices.Sort(sound)
	old := damaged
	if len(sound) > s.opt.Keep {
		old = append(old, sound[:len(sound)-s.opt.Keep]...)
	}
	if len(old) == 0 {
		return nil
	}
	pinned, err := s.pinned(ctx)
	if err != nil {
		return err
	}
	for _, id := range old {
		if !pinned[id] {
			s.removeSnapshot(ctx, id, c.objects)
		}
	}
	return nil
}

// pinned returns the snapshots a reader is loading: those named by a
// [sdk.SnapshotProgress] key that is not done.
func (s *snapshotter) pinned(ctx context.Context) (map[string]bool, error) {
	pinned := map[string]bool{}
	keys, err := s.kv.ListKeysFiltered(ctx, sdk.SnapshotProgressKeys)
	if err != nil {
		return nil, fmt.Errorf("listing consumer snapshot progress: %w", err)
	}
	for k := range keys.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var p sdk.SnapshotProgress
		if json.Unmarshal(e.Value(), &p) == nil && !p.Done {
			pinned[p.Snapshot] = true
		}
	}
	return pinned, nil
}
