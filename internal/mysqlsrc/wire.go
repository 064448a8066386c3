package mysqlsrc

import (
	"context"

	"github.com/databus/databus/internal/mysqlwire"
)

// DialWire opens a [mysqlwire.Conn] to the source, with TLS when its other
// connections use it (info.TLS, as for the binlog connection). The
// snapshot reads its rows through it.
func DialWire(ctx context.Context, cfg Config, info ServerInfo) (*mysqlwire.Conn, error) {
	tc, err := cfg.BinlogTLS(info)
	if err != nil {
		return nil, err
	}
	c, err := mysqlwire.Dial(ctx, mysqlwire.Config{Addr: cfg.Addr, User: cfg.User, Password: cfg.Password, TLS: tc,
		ConnectTimeout: cfg.ConnectTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout})
	if err != nil {
		return nil, Classify(cfg, err)
	}
	return c, nil
}
