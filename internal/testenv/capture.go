package testenv

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/mysqlsrc"
)

// Capture runs a capturer in the test process.
type Capture struct {
	Config   capture.Config
	NC       *nats.Conn
	cancel   context.CancelFunc
	done     chan error
	current  *capture.Capturer
	started  bool
	cleanups bool
}

// CaptureConfig returns a capture configuration for source "test" reading
// db, with short retry and checkpoint intervals for tests.
func CaptureConfig(db *MariaDB) capture.Config {
	return capture.Config{
		Source:             "test",
		MySQL:              mysqlsrc.Config{Addr: db.Addr(), User: "root", ConnectTimeout: 5 * time.Second},
		Stream:             bus.StreamConfig{Replicas: 1, DuplicateWindow: time.Minute},
		RetryMax:           time.Second,
		CheckpointInterval: 50 * time.Millisecond,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// NewCapture prepares a capturer publishing through nc; Start runs it.
func NewCapture(cfg capture.Config, nc *nats.Conn) *Capture {
	return &Capture{Config: cfg, NC: nc}
}

// Start runs the capturer until Stop or the end of the test, and waits
// until it streams the binlog (or has stopped with an error).
func (c *Capture) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	cp := capture.New(c.Config, c.NC)
	c.current = cp
	go func() { c.done <- cp.Run(ctx) }()
	if !c.cleanups {
		c.cleanups = true
		t.Cleanup(func() { c.Stop(t) })
	}
	Eventually(t, 20*time.Second, func() error {
		select {
		case err := <-c.done:
			c.done <- err
			return nil
		default:
		}
		if !cp.Status().Streaming {
			return errors.New("capture is not streaming yet")
		}
		return nil
	})
}

// Status returns the running capturer's status.
func (c *Capture) Status() capture.Status { return c.current.Status() }

// Stop cancels the capturer and returns what Run returned.
func (c *Capture) Stop(t testing.TB) error {
	t.Helper()
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("capture did not stop within 20s of cancellation")
	}
	return nil
}
