package mysqlsrc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-sql-driver/mysql"
)

// RowConn is a connection to the source for reading large results. go-mysql
// opens and authenticates it (TLS included); queries then speak the text
// protocol's command phase here, reading packets in place from a 256 KiB
// buffer: a row's values are the bytes the server sent, with no copy and no
// allocation per value. database/sql boxes every value in an interface,
// which cost a snapshot more CPU than encoding the rows did. The snapshot
// reads its tables through it. A RowConn is not safe for concurrent use.
type RowConn struct {
	c    *client.Conn
	nc   net.Conn
	br   *bufio.Reader
	seq  byte
	big  []byte   // a packet that does not fit in br's buffer
	vals [][]byte // the current row's values
	out  []byte   // the command being sent
}

const (
	rowBufferSize = 256 << 10
	// rowTimeout bounds the wait for the server's next bytes, as
	// openDB's ReadTimeout does for database/sql connections, and for
	// a statement to be sent.
	rowTimeout    = time.Minute
	maxPacketSize = 1<<24 - 1
)

// DialRows opens a RowConn to the source, with TLS when its other
// connections use it (info.TLS, as for the binlog connection).
func DialRows(ctx context.Context, cfg Config, info ServerInfo) (*RowConn, error) {
	tc, err := cfg.BinlogTLS(info)
	if err != nil {
		return nil, err
	}
	c, err := client.ConnectWithContext(ctx, cfg.Addr, cfg.User, cfg.Password, "", cfg.ConnectTimeout, func(c *client.Conn) error {
		if tc != nil {
			c.SetTLSConfig(tc)
		}
		// The classic protocol: an EOF packet after the column
		// definitions, and queries without attributes.
		c.UnsetCapability(gomysql.CLIENT_DEPRECATE_EOF)
		c.UnsetCapability(gomysql.CLIENT_QUERY_ATTRIBUTES)
		return nil
	})
	if err != nil {
		return nil, Classify(cfg, driverError(err))
	}
	if c.Compression != gomysql.MYSQL_COMPRESS_NONE {
		c.Close()
		return nil, fmt.Errorf("mysql %s: the row connection was opened with protocol compression, which it does not read", cfg.Addr)
	}
	// The embedded net.Conn is the TLS connection once TLS is on; after
	// the handshake nothing is left unread in go-mysql's own buffer.
	nc := c.Conn.Conn
	return &RowConn{c: c, nc: nc, br: bufio.NewReaderSize(deadlineReader{nc}, rowBufferSize)}, nil
}

// Close closes the connection.
func (r *RowConn) Close() error { return r.c.Close() }

// Exec runs a statement and discards what it returns.
func (r *RowConn) Exec(ctx context.Context, q string) error {
	return r.Query(ctx, q, nil)
}

// Query runs q and calls each with every row's values: nil for NULL,
// otherwise the bytes the server sent (in the session's
// character_set_results; untouched after SET NAMES binary). The values
// are valid only until each returns. A statement without a result set
// calls each never. An error, from the server, the connection or each,
// ends the query; one other than the server's leaves the connection
// unusable, and so does ctx's end while the query runs.
func (r *RowConn) Query(ctx context.Context, q string, each func(vals [][]byte) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = r.c.Close() })
	defer func() {
		if !stop() && err != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}()
	if err := r.send(q); err != nil {
		return err
	}
	p, err := r.next()
	if err != nil {
		return err
	}
	switch p[0] {
	case gomysql.OK_HEADER:
		return nil
	case gomysql.ERR_HEADER:
		return r.serverError(p)
	case gomysql.LocalInFile_HEADER:
		return errors.New("the server asked for a local file")
	}
	ncols, _, _ := gomysql.LengthEncodedInt(p)
	for range ncols { // the column definitions
		if _, err := r.next(); err != nil {
			return err
		}
	}
	if _, err := r.next(); err != nil { // the EOF after the definitions
		return err
	}
	for {
		p, err := r.next()
		if err != nil {
			return err
		}
		switch {
		case p[0] == gomysql.EOF_HEADER && len(p) < 9:
			return nil // EOF
		case p[0] == gomysql.ERR_HEADER:
			return r.serverError(p)
		}
		vals, err := splitRow(r.vals[:0], p)
		if err != nil {
			return err
		}
		r.vals = vals
		if uint64(len(vals)) != ncols {
			return fmt.Errorf("a row of %d values in a result of %d columns", len(vals), ncols)
		}
		if each != nil {
			if err := each(vals); err != nil {
				_ = r.c.Close()
				return err
			}
		}
	}
}

// splitRow appends the values of a text-protocol row to vals: each a
// length-encoded string, or 0xfb for NULL (nil).
func splitRow(vals [][]byte, p []byte) ([][]byte, error) {
	for pos := 0; pos < len(p); {
		var n uint64
		switch b := p[pos]; {
		case b < 0xfb:
			n, pos = uint64(b), pos+1
		case b == 0xfb:
			vals, pos = append(vals, nil), pos+1
			continue
		case b == 0xfc && pos+3 <= len(p):
			n, pos = uint64(binary.LittleEndian.Uint16(p[pos+1:])), pos+3
		case b == 0xfd && pos+4 <= len(p):
			n, pos = uint64(p[pos+1])|uint64(p[pos+2])<<8|uint64(p[pos+3])<<16, pos+4
		case b == 0xfe && pos+9 <= len(p):
			n, pos = binary.LittleEndian.Uint64(p[pos+1:]), pos+9
		default:
			return vals, fmt.Errorf("a malformed row from the server (byte 0x%02x at %d of %d)", b, pos, len(p))
		}
		if n > uint64(len(p)-pos) {
			return vals, fmt.Errorf("a malformed row from the server (a value of %d bytes at %d of %d)", n, pos, len(p))
		}
		end := pos + int(n)
		vals, pos = append(vals, p[pos:end:end]), end
	}
	return vals, nil
}

// send writes a COM_QUERY packet.
func (r *RowConn) send(q string) error {
	if err := r.nc.SetWriteDeadline(time.Now().Add(rowTimeout)); err != nil {
		return err
	}
	out := append(append(r.out[:0], 0, 0, 0, 0, gomysql.COM_QUERY), q...)
	n := len(out) - 4
	if n >= maxPacketSize {
		return fmt.Errorf("a statement of %d bytes is longer than this connection sends", len(q))
	}
	out[0], out[1], out[2], out[3] = byte(n), byte(n>>8), byte(n>>16), 0
	r.out, r.seq = out, 1
	_, err := r.nc.Write(out)
	return err
}

// next returns the payload of the next packet, valid until the next call.
// It lies in the read buffer when it fits there.
func (r *RowConn) next() ([]byte, error) {
	n, err := r.header()
	if err != nil {
		return nil, err
	}
	if n < maxPacketSize && n <= r.br.Size() {
		p, err := r.br.Peek(n)
		if err != nil {
			return nil, r.readErr(err)
		}
		_, _ = r.br.Discard(n) // the bytes stay in the buffer until the next read
		return p, nil
	}
	r.big = r.big[:0]
	for {
		r.big = append(r.big, make([]byte, n)...)
		if _, err := io.ReadFull(r.br, r.big[len(r.big)-n:]); err != nil {
			return nil, r.readErr(err)
		}
		if n < maxPacketSize {
			return r.big, nil
		}
		if n, err = r.header(); err != nil { // a continuation
			return nil, err
		}
	}
}

// header reads a packet header and returns the payload's length.
func (r *RowConn) header() (int, error) {
	h, err := r.br.Peek(4)
	if err != nil {
		return 0, r.readErr(err)
	}
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	if h[3] != r.seq {
		return 0, fmt.Errorf("the server's packet %d arrived where %d was expected", h[3], r.seq)
	}
	r.seq++
	_, _ = r.br.Discard(4)
	return n, nil
}

// deadlineReader renews the read deadline before each read from the
// connection, which the buffer makes once per 256 KiB or less.
type deadlineReader struct{ net.Conn }

func (d deadlineReader) Read(p []byte) (int, error) {
	if err := d.SetReadDeadline(time.Now().Add(rowTimeout)); err != nil {
		return 0, err
	}
	return d.Conn.Read(p)
}

func (r *RowConn) readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the server closed the connection: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// serverError turns an error packet into the driver's error type, which
// the rest of databus classifies.
func (r *RowConn) serverError(p []byte) error {
	e := &mysql.MySQLError{}
	if len(p) >= 3 {
		e.Number = uint16(p[1]) | uint16(p[2])<<8
		p = p[3:]
	}
	if len(p) >= 6 && p[0] == '#' {
		copy(e.SQLState[:], p[1:6])
		p = p[6:]
	}
	e.Message = string(p)
	return e
}

// driverError turns go-mysql's server error into the driver's error type.
func driverError(err error) error {
	var me *gomysql.MyError
	if !errors.As(err, &me) {
		return err
	}
	e := &mysql.MySQLError{Number: me.Code, Message: me.Message}
	copy(e.SQLState[:], me.State)
	return e
}
