package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// ServiceName is the name of the admin service: `nats micro info databus`.
const ServiceName = "databus"

// The admin service's endpoints.
const (
	EndpointInfo     = "info"
	EndpointLogLevel = "loglevel"
	EndpointSnapshot = "snapshot"
	EndpointPause    = "pause"
	EndpointResume   = "resume"
)

// AdminPrefix is the first tokens of the subjects of the admin service of
// every source; the embedded server lets only admins publish below it,
// except to info.
const AdminPrefix = "$DATABUS.ADMIN"

// AdminSubject is the subject of an endpoint of source's admin service.
// Every node of the source listens on it (no queue group): each answers
// info and loglevel, and only the capture leader answers snapshot, pause
// and resume.
func AdminSubject(source, endpoint string) string {
	return AdminPrefix + "." + source + "." + endpoint
}

// Reply is the answer of snapshot, pause, resume and loglevel.
type Reply struct {
	Node  string `json:"node"`
	State string `json:"state,omitempty"` // snapshot: started, done; pause, resume: the capture state
	// Level and Previous are loglevel's answer.
	Level    string        `json:"level,omitempty"`
	Previous string        `json:"previous,omitempty"`
	Snapshot *SnapshotDone `json:"snapshot,omitempty"`
}

// StartAdmin registers the node's admin service on nc until it is
// stopped.
func StartAdmin(nc *nats.Conn, n *Node) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name: ServiceName, Version: semver(n.Version),
		Description:        "databus capture of source " + n.Source + " (docs/operations.md)",
		Metadata:           map[string]string{"source": n.Source, "node": n.Name},
		QueueGroupDisabled: true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the admin service: %w", err)
	}
	g := svc.AddGroup(AdminPrefix+"."+n.Source, micro.WithGroupQueueGroupDisabled())
	for name, h := range map[string]micro.HandlerFunc{
		EndpointInfo:     func(r micro.Request) { _ = r.RespondJSON(n.Info()) },
		EndpointLogLevel: n.logLevel,
		EndpointPause:    n.leaderOnly(n.Pause),
		EndpointResume:   n.leaderOnly(n.Resume),
		EndpointSnapshot: n.snapshot,
	} {
		if err := g.AddEndpoint(name, h); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("starting the admin service's %s endpoint: %w", name, err)
		}
	}
	return svc, nil
}

// leaderOnly answers with the capture state after act, on the capture
// leader; the other nodes stay silent, so that the leader's answer is the
// one a caller gets.
func (n *Node) leaderOnly(act func() error) micro.HandlerFunc {
	return func(r micro.Request) {
		if err := act(); errors.Is(err, ErrNotLeader) {
			return
		}
		_ = r.RespondJSON(Reply{Node: n.Name, State: n.Info().State})
	}
}

// logLevel answers the level with an empty request, and sets it to the
// level the request holds (debug, info, warn or error, plain or as
// {"level": …}).
func (n *Node) logLevel(r micro.Request) {
	prev := levelName(n.Level.Level())
	want := strings.TrimSpace(string(r.Data()))
	if strings.HasPrefix(want, "{") {
		var req struct{ Level string }
		if err := json.Unmarshal([]byte(want), &req); err != nil {
			_ = r.Error("400", "bad request: want a level (debug, info, warn or error) or {\"level\": …}: "+err.Error(), nil)
			return
		}
		want = req.Level
	}
	if want == "" {
		_ = r.RespondJSON(Reply{Node: n.Name, Level: prev})
		return
	}
	level, err := ParseLevel(want)
	if err != nil {
		_ = r.Error("400", err.Error(), nil)
		return
	}
	n.Level.Set(level)
	n.Log.Info("log level changed through the admin service", "level", levelName(level), "previous", prev)
	_ = r.RespondJSON(Reply{Node: n.Name, Level: levelName(level), Previous: prev})
}

// snapshot takes a snapshot on the capture leader: it answers "started"
// at once and, in a second reply, the snapshot or why it failed. The
// other nodes stay silent.
func (n *Node) snapshot(r micro.Request) {
	n.mu.Lock()
	sched, nc := n.sched, n.nc
	n.mu.Unlock()
	switch {
	case sched == nil:
		return
	case sched.Busy():
		_ = r.Error("409", snapshot.ErrRunning.Error()+": this node is taking one", nil)
		return
	}
	_ = r.RespondJSON(Reply{Node: n.Name, State: "started"})
	// The second reply is published here, not through r: micro is done
	// with the request once the handler returns. It goes as soon as the
	// snapshot is the latest, before older ones are deleted; an error
	// after that (deleting them) is the schedule's to log.
	reply := r.Reply()
	go func() {
		answered := false
		answer := func(man *sdk.Manifest, err error) {
			answered = true
			msg := nats.NewMsg(reply)
			switch {
			case errors.Is(err, snapshot.ErrRunning):
				msg.Header.Set(micro.ErrorHeader, err.Error())
				msg.Header.Set(micro.ErrorCodeHeader, "409")
			case err != nil:
				msg.Header.Set(micro.ErrorHeader, err.Error())
				msg.Header.Set(micro.ErrorCodeHeader, "500")
			default:
				msg.Data, _ = json.Marshal(Reply{Node: n.Name, State: "done", Snapshot: snapshotDone(man, man.Finished.Sub(man.Started))})
			}
			if err := nc.PublishMsg(msg); err != nil {
				n.Log.Warn("answering a snapshot request", "err", err)
			}
		}
		man, err := n.TakeSnapshot(func(man *sdk.Manifest) { answer(man, nil) })
		if !answered {
			answer(man, err)
		}
	}()
}

// ParseLevel parses a log level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: want debug, info, warn or error", s)
}

// levelName is l as log.level spells it.
func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

var semverRE = regexp.MustCompile(`^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$`)

// semver is version as the semantic version micro requires: itself
// without its v, or 0.0.0 with the version as build metadata (a git
// describe output, "dev").
func semver(version string) string {
	if m := semverRE.FindStringSubmatch(version); m != nil {
		return m[1]
	}
	meta := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, version)
	meta = strings.Trim(strings.ReplaceAll(meta, "..", "."), ".")
	if meta == "" {
		return "0.0.0"
	}
	return "0.0.0+" + meta
}
