package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/databus/databus/sdk"
)

// removePartial deletes what interrupted snapshots left behind.
func (s *snapshotter) removePartial(ctx context.Context) error {
	ids, err := sdk.SnapshotsIn(ctx, s.obs)
	if err != nil {
		return err
	}
	for id, complete := range ids {
		if !complete {
			s.removeSnapshot(ctx, id)
		}
	}
	return nil
}

// removeSnapshot deletes every object of snapshot id, the manifest first so
// that it is never seen half deleted.
func (s *snapshotter) removeSnapshot(ctx context.Context, id string) {
	_ = s.obs.Delete(ctx, sdk.ManifestName(id))
	_ = s.kv.Delete(ctx, sdk.SnapshotDamageKey(id))
	objs, err := s.obs.List(ctx)
	if err != nil {
		return
	}
	for _, o := range objs {
		if strings.HasPrefix(o.Name, id+"/") {
			_ = s.obs.Delete(ctx, o.Name)
		}
	}
}

// prune keeps the newest opt.Keep sound complete snapshots and any a
// durable consumer is still loading; damaged snapshots go too.
func (s *snapshotter) prune(ctx context.Context) error {
	ids, err := sdk.SnapshotsIn(ctx, s.obs)
	if err != nil {
		return err
	}
	var sound, damaged []string
	for id, complete := range ids {
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
			s.removeSnapshot(ctx, id)
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
