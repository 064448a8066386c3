package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/lease"
	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/sdk"
)

func cmdStatus(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("status takes no arguments, got %q", args)}
	}
	cfg := env.cfg
	nc, err := connectRunning(cfg, "databus-status")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	out := map[string]any{"source": cfg.Source}
	s, err := js.Stream(ctx, sdk.StreamName(cfg.Source))
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		out["stream"] = "not created yet: start `databus run`"
	case err != nil:
		return fmt.Errorf("reading stream %s: %w", sdk.StreamName(cfg.Source), err)
	default:
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		out["stream"] = map[string]any{
			"name": info.Config.Name, "messages": info.State.Msgs, "bytes": info.State.Bytes,
			"first_seq": info.State.FirstSeq, "last_seq": info.State.LastSeq, "consumers": info.State.Consumers,
		}
	}
	out["cluster"] = clusterStatus(ctx, js, cfg.Source)
	// Live: what each running node says of itself.
	infos, err := ops.Infos(ctx, nc, cfg.Source, ops.Waits{First: 2 * time.Second, More: 300 * time.Millisecond})
	switch {
	case err != nil:
		out["live"] = "no databus run answered (" + err.Error() + "): what follows is the stored state"
	default:
		slices.SortFunc(infos, func(a, b ops.Info) int { return strings.Compare(a.Node, b.Node) })
		out["live"] = infos
	}
	var stopped *bus.CaptureStop // why capture stopped, when an error did
	kv, err := js.KeyValue(ctx, sdk.StateBucket(cfg.Source))
	if err == nil {
		out["capture"] = captureStatus(ctx, nc, kv, cfg.Capture.Lease)
		if e, err := kv.Get(ctx, bus.CaptureStopKey); err == nil {
			var stop bus.CaptureStop
			if json.Unmarshal(e.Value(), &stop) == nil {
				stopped = &stop
				out["capture_stopped"] = stopped
			}
		}
		if e, err := kv.Get(ctx, bus.CheckpointKey); err == nil {
			out["checkpoint"] = json.RawMessage(e.Value())
		}
		if e, err := kv.Get(ctx, bus.SnapshotAttemptKey); err == nil {
			out["snapshot_attempt"] = json.RawMessage(e.Value())
		}
		if snaps, err := snapshotList(ctx, js, kv, cfg.Source); err == nil {
			out["snapshots"] = snaps
		}
	}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if infos, _ := out["live"].([]ops.Info); stopped == nil {
		for _, info := range infos {
			if info.State == ops.StateStopped {
				return fmt.Errorf("capture is stopped by an error (node %s): %s", info.Node, info.Reason)
			}
		}
	}
	if stopped != nil {
		// Non-zero, for scripts and probes.
		return fmt.Errorf("capture is stopped by an error (node %s, %s): %s", stopped.Node, stopped.At.Format(time.RFC3339), stopped.Error)
	}
	return nil
}

// captureStatus describes which node leads capture and every node that
// announced itself (the others stand by). A node not heard from for three
// leases (killed, or its machine gone) is marked stale.
func captureStatus(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, leaseTTL time.Duration) map[string]any {
	st := map[string]any{}
	rec, err := lease.ReadFromLeader(ctx, nc, kv.Bucket(), bus.LeaderKey)
	switch {
	case err != nil:
		st["lease_error"] = err.Error()
	case rec == nil:
		st["leader"] = "none yet: is `databus run` running?"
	case rec.Released:
		st["leader"] = "none: " + rec.Node + " released the lease when it stopped"
		st["term"] = rec.Term
	default:
		st["leader"], st["term"], st["lease_renewed"], st["lease"] = rec.Node, rec.Term, rec.Renewed, rec.TTL
	}
	type node struct {
		bus.Node
		Stale bool `json:"stale,omitempty"`
	}
	var nodes []node
	if keys, err := kv.ListKeysFiltered(ctx, bus.NodeKeys); err == nil {
		for key := range keys.Keys() {
			e, err := kv.Get(ctx, key)
			if err != nil {
				continue
			}
			var n node
			if json.Unmarshal(e.Value(), &n.Node) == nil {
				n.Stale = time.Since(n.Seen) > 3*leaseTTL
				nodes = append(nodes, n)
			}
		}
	}
	slices.SortFunc(nodes, func(a, b node) int { return strings.Compare(a.Name, b.Name) })
	st["nodes"] = nodes
	return st
}

// clusterStatus describes, for the stream, the state bucket and the
// snapshot bucket of source, which NATS server leads it and how its
// replicas stand.
func clusterStatus(ctx context.Context, js jetstream.JetStream, source string) map[string]any {
	out := map[string]any{}
	events, state, snapshots := bus.Streams(source)
	for key, name := range map[string]string{"stream": events, "state_bucket": state, "snapshot_bucket": snapshots} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			out[key] = map[string]any{"name": name, "error": err.Error()}
			continue
		}
		info := s.CachedInfo()
		st := map[string]any{"name": name, "replicas": info.Config.Replicas}
		if cl := info.Cluster; cl != nil {
			st["cluster"], st["leader"] = cl.Name, cl.Leader
			var peers []map[string]any
			for _, p := range cl.Replicas {
				peers = append(peers, map[string]any{"server": p.Name, "current": p.Current, "offline": p.Offline,
					"lag": p.Lag, "active": p.Active.Round(time.Millisecond).String()})
			}
			st["followers"] = peers
		}
		out[key] = st
	}
	return out
}

// snapshotList describes the complete snapshots of source, newest first,
// with the damage consumers found in any of them (recorded in kv, the
// source's state bucket).
func snapshotList(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, source string) ([]map[string]any, error) {
	ids, err := sdk.SnapshotIDs(ctx, js, source)
	if err != nil {
		return nil, err
	}
	latest := ""
	if e, err := kv.Get(ctx, sdk.LatestSnapshotKey); err == nil {
		latest = string(e.Value())
	}
	var out []map[string]any
	for _, id := range slices.Backward(ids) {
		m, err := sdk.ReadManifest(ctx, js, source, id)
		if err != nil {
			continue
		}
		snap := map[string]any{
			"id": m.ID, "latest": m.ID == latest, "pos": m.Position.String(), "gtid_set": m.GTIDSet, "stream_seq": m.StreamSeq,
			"tables": len(m.Tables), "rows": m.Rows, "stored_bytes": m.StoredBytes, "finished": m.Finished, "format": m.Version,
		}
		if d, err := sdk.ReadSnapshotDamage(ctx, kv, id); err == nil && d != nil {
			snap["damaged"] = d
		}
		out = append(out, snap)
	}
	return out, nil
}

// connectRunning connects to the NATS server of the running `databus run`.
func connectRunning(cfg configs.Config, name string) (*nats.Conn, error) {
	url := natsURL(cfg)
	nc, err := nats.Connect(url, natsOptions(cfg, name)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s (is `databus run` running? see nats.url / nats.listen): %w", sdk.RedactURL(url), err)
	}
	return nc, nil
}
