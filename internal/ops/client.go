package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// ErrNoNode is returned when no node of the source answered: no
// `databus run` runs for it (or none leads capture, for the endpoints only
// the leader answers).
var ErrNoNode = errors.New("no databus run node answered")

// ErrRefused is returned when the NATS server refused the request: the
// user may not call that endpoint (only admins may change a node).
var ErrRefused = errors.New("the NATS server refused the request")

// Waits says how long a caller waits for the first reply, and for each
// next one (0: until its context ends).
type Waits struct{ First, More time.Duration }

// Call sends data to endpoint of source's admin service and hands each
// reply to each until it returns false, ctx ends, or the wait for a reply
// passes. It returns [ErrNoNode] when nothing answered.
func Call(ctx context.Context, nc *nats.Conn, source, endpoint string, data []byte, waits Waits, each func(*nats.Msg) bool) error {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	before := nc.LastError()
	if err := nc.PublishRequest(AdminSubject(source, endpoint), inbox, data); err != nil {
		return err
	}
	// A refusal comes back before the flush's answer.
	if err := nc.FlushTimeout(waits.First); err == nil {
		if perr := nc.LastError(); perr != before && errors.Is(perr, nats.ErrPermissionViolation) {
			return fmt.Errorf("%w: %v (this NATS user may not call %s: only an admin may change a node)", ErrRefused, perr, endpoint)
		}
	}
	answered := false
	for {
		wait := waits.First
		if answered {
			wait = waits.More
		}
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if wait > 0 {
			wctx, cancel = context.WithTimeout(ctx, wait)
		}
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		switch {
		case err == nil && m.Header.Get("Status") == "503":
			return fmt.Errorf("%w: nothing listens on %s", ErrNoNode, AdminSubject(source, endpoint))
		case err == nil:
			answered = true
			if !each(m) {
				return nil
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if perr := nc.LastError(); perr != before && errors.Is(perr, nats.ErrPermissionViolation) {
			return fmt.Errorf("%w: %v (this NATS user may not call %s: only an admin may change a node)", ErrRefused, perr, endpoint)
		}
		if !answered {
			return fmt.Errorf("%w within %v on %s", ErrNoNode, waits.First, AdminSubject(source, endpoint))
		}
		return nil
	}
}

// ReplyError is the error a reply carries, if any.
func ReplyError(m *nats.Msg) error {
	if desc := m.Header.Get(micro.ErrorHeader); desc != "" {
		return fmt.Errorf("%s (code %s)", desc, m.Header.Get(micro.ErrorCodeHeader))
	}
	return nil
}

// Infos asks every node of source for its [Info].
func Infos(ctx context.Context, nc *nats.Conn, source string, waits Waits) ([]Info, error) {
	var out []Info
	err := Call(ctx, nc, source, EndpointInfo, nil, waits, func(m *nats.Msg) bool {
		var info Info
		if json.Unmarshal(m.Data, &info) == nil {
			out = append(out, info)
		}
		return true
	})
	return out, err
}

// Ask sends data to an endpoint that the leader (snapshot, pause, resume)
// or every node (loglevel) answers once, and returns the first answer.
func Ask(ctx context.Context, nc *nats.Conn, source, endpoint string, data []byte, wait time.Duration) (Reply, error) {
	var (
		r    Reply
		rerr error
	)
	err := Call(ctx, nc, source, endpoint, data, Waits{First: wait}, func(m *nats.Msg) bool {
		if rerr = ReplyError(m); rerr == nil {
			rerr = json.Unmarshal(m.Data, &r)
		}
		return false
	})
	if err != nil {
		return Reply{}, err
	}
	return r, rerr
}

// Snapshot asks the capture leader of source to take a snapshot and
// waits until it is taken, calling progress with the leader's [Info]
// about every second meanwhile.
func Snapshot(ctx context.Context, nc *nats.Conn, source string, progress func(Info)) (Reply, error) {
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		r    Reply
		rerr error
	)
	err := Call(ctx, nc, source, EndpointSnapshot, nil, Waits{First: 5 * time.Second}, func(m *nats.Msg) bool {
		if rerr = ReplyError(m); rerr == nil {
			rerr = json.Unmarshal(m.Data, &r)
		}
		if rerr != nil || r.State != "started" {
			return false
		}
		go watchSnapshot(pctx, nc, source, r.Node, progress)
		return true
	})
	if err != nil {
		return Reply{}, err
	}
	return r, rerr
}

// watchSnapshot calls progress with the info of node every second until
// ctx ends.
func watchSnapshot(ctx context.Context, nc *nats.Conn, source, node string, progress func(Info)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		infos, _ := Infos(ctx, nc, source, Waits{First: time.Second, More: 200 * time.Millisecond})
		for _, info := range infos {
			if info.Node == node && ctx.Err() == nil {
				progress(info)
			}
		}
	}
}
