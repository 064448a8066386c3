package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/sdk"
)

// chunkBytes is the size of the buffers of lines handed from a table's
// reader to the goroutine compressing and storing its object: large
// enough that handing one over costs nothing next to filling it, small
// enough that the pool stays a few MiB (a `databus snapshot` process pays
// a page fault for each page it touches).
const chunkBytes = 256 << 10

// objectWriter streams lines into one Object Store object. The reading
// goroutine appends lines to a buffer taken from the snapshot's pool and
// hands full buffers over; the goroutine storing the object hashes and
// compresses them as the Object Store reads, and returns them to the pool.
// Reading MySQL and compressing thus run at the same time, with at most the
// pool's buffers in flight.
type objectWriter struct {
	s     *snapshotter
	name  string
	pool  chan []byte
	buf   []byte
	full  chan []byte
	stop  chan struct{} // closed by abort, after abortErr is set
	rows  int64
	bytes int64

	abortErr error
	// finished is closed when the object is stored or has failed; info,
	// and err are set before.
	finished chan struct{}
	info     *jetstream.ObjectInfo
	err      error
}

func (s *snapshotter) newObject(ctx context.Context, name string) *objectWriter {
	w := &objectWriter{s: s, name: name, pool: s.bufs, full: make(chan []byte, 2), stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		r := &compressor{w: w}
		r.gz = kept.compressor(&r.out)
		w.info, w.err = s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
		kept.keepCompressor(r.gz)
	}()
	return w
}

// kept holds line buffers and compressors from one snapshot to the next,
// so that `databus run` does not allocate them again for every snapshot:
// the memory they take would be handed back to the system between
// snapshots and paid for again, a page fault at a time. At most 16
// buffers (4.5 MiB) and 4 compressors (about 1 MiB each) are kept.
var kept = keptMemory{bufs: make(chan []byte, 16), gzips: make(chan *gzip.Writer, 4)}

type keptMemory struct {
	bufs  chan []byte
	gzips chan *gzip.Writer
}

// buffer returns a kept buffer, or nil (allocated on first use).
func (k *keptMemory) buffer() []byte {
	select {
	case b := <-k.bufs:
		return b
	default:
		return nil
	}
}

// keepBuffers keeps the buffers left in a snapshot's pool once it is done
// with them.
func (k *keptMemory) keepBuffers(pool chan []byte) {
	for {
		select {
		case b := <-pool:
			if b == nil {
				continue
			}
			select {
			case k.bufs <- b[:0]:
			default:
				return
			}
		default:
			return
		}
	}
}

// compressor returns a kept gzip writer, or a new one, writing to w.
func (k *keptMemory) compressor(w io.Writer) *gzip.Writer {
	select {
	case gz := <-k.gzips:
		gz.Reset(w)
		return gz
	default:
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		return gz
	}
}

// keepCompressor keeps gz for the next object, of this snapshot or a
// later one.
func (k *keptMemory) keepCompressor(gz *gzip.Writer) {
	select {
	case k.gzips <- gz:
	default:
	}
}

// appendRow appends a line to the object: encode appends it to the
// buffer it is given and returns the buffer.
func (w *objectWriter) appendRow(ctx context.Context, encode func([]byte) ([]byte, error)) error {
	if w.buf == nil {
		select {
		case w.buf = <-w.pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, chunkBytes+chunkBytes/8)
		}
	}
	n := len(w.buf)
	buf, err := encode(w.buf)
	w.buf = buf
	if err != nil {
		w.buf = w.buf[:n]
		return err
	}
	w.rows++
	w.bytes += int64(len(buf) - n)
	if len(buf) >= chunkBytes {
		return w.flush()
	}
	return nil
}

// flush hands the buffer to the storing goroutine.
func (w *objectWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	select {
	case w.full <- w.buf:
		w.buf = nil
		return nil
	case <-w.finished:
		if w.err == nil {
			w.err = errors.New("stored before its end")
		}
		return w.s.storeErr(w.name, w.err)
	}
}

// release returns a buffer to the pool; a buffer grown by a huge row is
// dropped so that the pool stays small.
func (w *objectWriter) release(b []byte) {
	if cap(b) > 4*chunkBytes {
		b = nil
	}
	w.pool <- b[:0]
}

// abort stops storing the object (the Object Store deletes what it stored)
// and returns its buffers to the pool.
func (w *objectWriter) abort(err error) {
	w.abortErr = err
	close(w.stop)
	<-w.finished
	for {
		select {
		case b := <-w.full:
			w.release(b)
		default:
			if w.buf != nil {
				w.release(w.buf)
				w.buf = nil
			}
			return
		}
	}
}

func (s *snapshotter) closeObject(w *objectWriter, sp *span) error {
	err := w.flush()
	if w.buf != nil {
		w.release(w.buf)
		w.buf = nil
	}
	if err == nil {
		close(w.full)
		<-w.finished
		err = w.err
	}
	if err != nil {
		return s.storeErr(w.name, err)
	}
	// The Object Store hashed the stored bytes as it took them: the
	// manifest names the same digest.
	b64, ok := strings.CutPrefix(w.info.Digest, "SHA-256=")
	sum, err := base64.URLEncoding.DecodeString(b64)
	if !ok || err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("storing snapshot object %s: the Object Store gave digest %q, not a SHA-256", w.name, w.info.Digest)
	}
	sp.objects = append(sp.objects, sdk.SnapshotObject{Name: w.name, Rows: w.rows, Bytes: w.bytes, StoredBytes: int64(w.info.Size), SHA256: hex.EncodeToString(sum)})
	sp.rows += w.rows
	sp.bytes += w.bytes
	s.mu.Lock()
	s.man.StoredBytes += int64(w.info.Size)
	s.mu.Unlock()
	return nil
}

// compressor is the io.Reader the Object Store reads an object from: the
// gzip of the buffers handed over, hashed and compressed as they are read.
type compressor struct {
	w   *objectWriter
	gz  *gzip.Writer
	out bytes.Buffer
	eof bool
}

func (r *compressor) Read(p []byte) (int, error) {
	for r.out.Len() == 0 && !r.eof {
		select {
		case b, ok := <-r.w.full:
			if !ok {
				if err := r.gz.Close(); err != nil {
					return 0, err
				}
				r.eof = true
				continue
			}
			_, err := r.gz.Write(b)
			r.w.release(b)
			if err != nil {
				return 0, err
			}
		case <-r.w.stop:
			return 0, r.w.abortErr
		}
	}
	if r.out.Len() == 0 {
		return 0, io.EOF
	}
	return r.out.Read(p)
}

// storeErr explains a failure to store object name. When JetStream is out
// of room it says so, how full the account is, and what to change.
func (s *snapshotter) storeErr(name string, err error) error {
	if !bus.StorageFull(err) {
		return fmt.Errorf("storing snapshot object %s: %w", name, err)
	}
	use := ""
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ai, aerr := s.js.AccountInfo(ctx); aerr == nil && ai.Limits.MaxStore > 0 {
		use = fmt.Sprintf(", %d of the account's %d bytes of file storage in use", ai.Store, ai.Limits.MaxStore)
	}
	return fmt.Errorf("storing snapshot object %s: the JetStream store is full%s: raise nats.max_store (or the account's JetStream limit), free the NATS server's disk, or keep fewer snapshots (snapshot.keep): %w", name, use, err)
}
