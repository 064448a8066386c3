package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/sdk"
)

// snapshotIDs lists the snapshots in the bucket and whether each is
// complete (has its manifest).
func (s *snapshotter) snapshotIDs(ctx context.Context) (map[string]bool, error) {
	objs, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing snapshot objects: %w", err)
	}
	ids := map[string]bool{}
	for _, o := range objs {
		id, manifest := sdk.SnapshotOfObject(o.Name)
		ids[id] = ids[id] || manifest
	}
	return ids, nil
}

// removePartial deletes what interrupted snapshots left behind.
func (s *snapshotter) removePartial(ctx context.Context) error {
	ids, err := s.snapshotIDs(ctx)
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

// prune keeps the newest opt.Keep complete snapshots and any a durable
// consumer is still loading.
func (s *snapshotter) prune(ctx context.Context) error {
	ids, err := s.snapshotIDs(ctx)
	if err != nil {
		return err
	}
	var complete []string
	for id, ok := range ids {
		if ok {
			complete = append(complete, id)
		}
	}
	slices.Sort(complete)
	if len(complete) <= s.opt.Keep {
		return nil
	}
	pinned := map[string]bool{}
	keys, err := s.kv.ListKeysFiltered(ctx, sdk.SnapshotProgressKeys)
	if err != nil {
		return fmt.Errorf("listing consumer snapshot progress: %w", err)
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
	for _, id := range complete[:len(complete)-s.opt.Keep] {
		if !pinned[id] {
			s.removeSnapshot(ctx, id)
		}
	}
	return nil
}
