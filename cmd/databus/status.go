package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
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
	kv, err := js.KeyValue(ctx, sdk.StateBucket(cfg.Source))
	if err == nil {
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
	return enc.Encode(out)
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
