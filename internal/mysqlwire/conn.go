// Package mysqlwire is a connection to a MySQL or MariaDB server whose
// command phase databus speaks itself, for the two places where
// database/sql costs more than the work: reading a snapshot's rows and
// applying a busy stream. go-mysql opens and authenticates the connection
// (TLS included); queries are then COM_QUERY packets written here and
// responses read in place from a 256 KiB buffer.
//
//   - A row's values are the bytes the server sent, with no copy and no
//     allocation per value (database/sql boxes every value in an
//     interface, which cost a snapshot more CPU than encoding its rows).
//   - Commands can be pipelined ([Conn.Send], [Conn.Results]): the next
//     batch of statements is on its way while the server runs the one
//     before, so the server never waits for the client, and the client
//     reads a batch's results once they are all there instead of waking
//     for each statement's OK (MariaDB sends each one as it finishes).
//
// Errors the server returns are the go-sql-driver's *mysql.MySQLError, as
// everywhere else in databus.
package mysqlwire

import (
	"bufio"
	"context"
	"crypto/tls"
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

// Config says how to reach a server.
type Config struct {
	// Addr is host:port, or a Unix socket's path.
	Addr           string
	User, Password string
	// TLS, when set, encrypts the connection.
	TLS            *tls.Config
	ConnectTimeout time.Duration
	// ReadTimeout bounds each wait for the server's next bytes, and
	// WriteTimeout the writing of a command; zero waits for ever.
	ReadTimeout, WriteTimeout time.Duration
	// MultiStatements lets a command hold several statements separated
	// by semicolons.
	MultiStatements bool
}

// Conn is a connection. It is not safe for concurrent use.
type Conn struct {
	c   *client.Conn
	nc  net.Conn
	br  *bufio.Reader
	seq byte
	big []byte // a packet that does not fit in br's buffer
	row [][]byte
	// pending holds, for each command sent whose results are not read
	// yet, the sequence number its response starts at.
	pending []byte
	// writes reports the end of the last write; nil before the first.
	writes       chan error
	out          []byte
	writeTimeout time.Duration
}

const (
	bufferSize    = 256 << 10
	maxPacketSize = 1<<24 - 1
)

// Dial opens a connection.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	c, err := client.ConnectWithContext(ctx, cfg.Addr, cfg.User, cfg.Password, "", cfg.ConnectTimeout, func(c *client.Conn) error {
		if cfg.TLS != nil {
			c.SetTLSConfig(cfg.TLS)
		}
		// The classic protocol: an EOF packet after the column
		// definitions, and queries without attributes.
		c.UnsetCapability(gomysql.CLIENT_DEPRECATE_EOF)
		c.UnsetCapability(gomysql.CLIENT_QUERY_ATTRIBUTES)
		if cfg.MultiStatements {
			if err := c.SetCapability(gomysql.CLIENT_MULTI_STATEMENTS); err != nil {
				return err
			}
			return c.SetCapability(gomysql.CLIENT_MULTI_RESULTS)
		}
		return nil
	})
	if err != nil {
		return nil, driverError(err)
	}
	if c.Compression != gomysql.MYSQL_COMPRESS_NONE {
		c.Close()
		return nil, fmt.Errorf("mysql %s: the connection was opened with protocol compression, which it does not read", cfg.Addr)
	}
	// The embedded net.Conn is the TLS connection once TLS is on; after
	// the handshake nothing is left unread in go-mysql's own buffer.
	nc := c.Conn.Conn
	var r io.Reader = nc
	if cfg.ReadTimeout > 0 {
		r = deadlineReader{nc, cfg.ReadTimeout}
	}
	return &Conn{c: c, nc: nc, br: bufio.NewReaderSize(r, bufferSize), writeTimeout: cfg.WriteTimeout}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Exec runs q and discards what it returns. With MultiStatements, q may
// hold several statements: the first the server refuses ends it, and its
// error is returned.
func (c *Conn) Exec(ctx context.Context, q string) error {
	return c.Query(ctx, q, nil)
}

// Query runs q and calls each with every row's values: nil for NULL,
// otherwise the bytes the server sent (in the session's
// character_set_results; untouched after SET NAMES binary). The values
// are valid only until each returns. A statement without a result set
// calls each never. An error, from the server, the connection or each,
// ends the query; one other than the server's leaves the connection
// unusable, and so does ctx's end while the query runs. The results of
// every command sent before must have been read.
func (c *Conn) Query(ctx context.Context, q string, each func(row [][]byte) error) error {
	if len(c.pending) > 0 {
		return fmt.Errorf("%d commands sent before have results not read yet", len(c.pending))
	}
	if err := c.Send(q); err != nil {
		return err
	}
	return c.results(ctx, each)
}

// Send writes q as a command without waiting for its results, which
// [Conn.Results] reads, in the order the commands were sent. The write
// happens in the background, so that the results of the commands before
// are read while it goes on (the server writes them while it reads q).
func (c *Conn) Send(q string) error {
	if c.writes != nil {
		if err := <-c.writes; err != nil {
			return err
		}
	} else {
		c.writes = make(chan error, 1)
	}
	// COM_QUERY, in packets of at most maxPacketSize bytes; one of
	// exactly that size is followed by an empty one.
	payload := 1 + len(q)
	out := c.out[:0]
	var seq byte
	for sent := 0; ; seq++ {
		n := min(payload-sent, maxPacketSize)
		out = append(out, byte(n), byte(n>>8), byte(n>>16), seq)
		if sent == 0 {
			out = append(append(out, gomysql.COM_QUERY), q[:n-1]...)
		} else {
			out = append(out, q[sent-1:sent-1+n]...)
		}
		sent += n
		if n < maxPacketSize {
			break
		}
	}
	c.out = out
	c.pending = append(c.pending, seq+1)
	go func() {
		var err error
		if c.writeTimeout > 0 {
			err = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		}
		if err == nil {
			_, err = c.nc.Write(out)
		}
		if err != nil {
			_ = c.nc.Close() // the reads fail too
		}
		c.writes <- err
	}()
	return nil
}

// Pending returns how many commands sent have results not read yet.
func (c *Conn) Pending() int { return len(c.pending) }

// Results reads the results of the oldest command sent and not read:
// every statement's, up to the last or the first the server refused,
// whose error it returns.
func (c *Conn) Results(ctx context.Context) error {
	if len(c.pending) == 0 {
		return errors.New("no command's results to read")
	}
	return c.results(ctx, nil)
}

// results reads the oldest command's results, handing rows to each.
func (c *Conn) results(ctx context.Context, each func([][]byte) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.c.Close() })
	defer func() {
		if !stop() && err != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}()
	c.seq, c.pending = c.pending[0], c.pending[1:]
	var first error // the server refused a statement
	for more := true; more; {
		more, err = c.result(each)
		if err != nil {
			if !isServerError(err) {
				return err
			}
			first = err
		}
	}
	return first
}

// result reads one statement's result: an OK, an error or a result set.
// more reports whether the same command has another result.
func (c *Conn) result(each func([][]byte) error) (more bool, err error) {
	p, err := c.next()
	if err != nil {
		return false, err
	}
	switch p[0] {
	case gomysql.OK_HEADER:
		return okStatus(p)&gomysql.SERVER_MORE_RESULTS_EXISTS != 0, nil
	case gomysql.ERR_HEADER:
		return false, serverError(p)
	case gomysql.LocalInFile_HEADER:
		_ = c.Close()
		return false, errors.New("the server asked for a local file")
	}
	ncols, _, _ := gomysql.LengthEncodedInt(p)
	for range ncols + 1 { // the column definitions and the EOF after them
		if _, err := c.next(); err != nil {
			return false, err
		}
	}
	for {
		p, err := c.next()
		if err != nil {
			return false, err
		}
		switch {
		case p[0] == gomysql.EOF_HEADER && len(p) < 9:
			return len(p) >= 5 && binary.LittleEndian.Uint16(p[3:])&gomysql.SERVER_MORE_RESULTS_EXISTS != 0, nil
		case p[0] == gomysql.ERR_HEADER:
			return false, serverError(p)
		}
		if each == nil {
			continue
		}
		row, err := splitRow(c.row[:0], p)
		if err != nil {
			return false, err
		}
		c.row = row
		if uint64(len(row)) != ncols {
			return false, fmt.Errorf("a row of %d values in a result of %d columns", len(row), ncols)
		}
		if err := each(row); err != nil {
			_ = c.Close()
			return false, err
		}
	}
}

// okStatus returns the status flags of an OK packet.
func okStatus(p []byte) uint16 {
	pos := 1
	for range 2 { // affected rows, last insert id
		_, _, n := gomysql.LengthEncodedInt(p[pos:])
		pos += n
	}
	if pos+2 > len(p) {
		return 0
	}
	return binary.LittleEndian.Uint16(p[pos:])
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

// next returns the payload of the next packet, valid until the next call.
// It lies in the read buffer when it fits there.
func (c *Conn) next() ([]byte, error) {
	n, err := c.header()
	if err != nil {
		return nil, err
	}
	if n < maxPacketSize && n <= c.br.Size() {
		p, err := c.br.Peek(n)
		if err != nil {
			return nil, readErr(err)
		}
		_, _ = c.br.Discard(n) // the bytes stay in the buffer until the next read
		return p, nil
	}
	c.big = c.big[:0]
	for {
		c.big = append(c.big, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.big[len(c.big)-n:]); err != nil {
			return nil, readErr(err)
		}
		if n < maxPacketSize {
			return c.big, nil
		}
		if n, err = c.header(); err != nil { // a continuation
			return nil, err
		}
	}
}

// header reads a packet header and returns the payload's length.
func (c *Conn) header() (int, error) {
	h, err := c.br.Peek(4)
	if err != nil {
		return 0, readErr(err)
	}
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	if h[3] != c.seq {
		return 0, fmt.Errorf("the server's packet %d arrived where %d was expected", h[3], c.seq)
	}
	c.seq++
	_, _ = c.br.Discard(4)
	return n, nil
}

// deadlineReader renews the read deadline before each read from the
// connection, which the buffer makes once per 256 KiB or less.
type deadlineReader struct {
	net.Conn
	timeout time.Duration
}

func (d deadlineReader) Read(p []byte) (int, error) {
	if err := d.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
		return 0, err
	}
	return d.Conn.Read(p)
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the server closed the connection: %w", io.ErrUnexpectedEOF)
	}
	return err
}

func isServerError(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me)
}

// serverError turns an error packet into the driver's error type, which
// the rest of databus classifies.
func serverError(p []byte) error {
	e := &mysql.MySQLError{}
	if len(p) >= 3 {
		e.Number = binary.LittleEndian.Uint16(p[1:])
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
