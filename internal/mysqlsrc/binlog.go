package mysqlsrc

import (
	"context"
	"database/sql"
	"fmt"
)

// Querier is a *sql.DB or a *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// MasterStatus returns the server's current binlog file and position.
func MasterStatus(ctx context.Context, db Querier, info ServerInfo) (string, uint32, error) {
	q := "SHOW MASTER STATUS"
	if !info.MariaDB && VersionAtLeast(info.Version, 8, 4) {
		q = "SHOW BINARY LOG STATUS"
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", 0, err
	}
	if !rows.Next() {
		return "", 0, fmt.Errorf("%s returned nothing: %w", q, ErrSourceSettings)
	}
	vals := make([]any, len(cols))
	var file string
	var pos uint32
	vals[0], vals[1] = &file, &pos
	for i := 2; i < len(cols); i++ {
		vals[i] = new(sql.RawBytes)
	}
	if err := rows.Scan(vals...); err != nil {
		return "", 0, fmt.Errorf("%s: %w", q, err)
	}
	return file, pos, nil
}

// BinaryLog is one binlog file the server has and its size in bytes.
type BinaryLog struct {
	Name string
	Size int64
}

// BinaryLogs lists the binlog files the server still has, oldest first.
func BinaryLogs(ctx context.Context, db Querier) ([]string, error) {
	logs, err := BinaryLogSizes(ctx, db)
	if err != nil {
		return nil, err
	}
	files := make([]string, len(logs))
	for i, l := range logs {
		files[i] = l.Name
	}
	return files, nil
}

// BinaryLogSizes lists the binlog files the server still has, oldest
// first, with their sizes: the last one's is where the server writes next.
func BinaryLogSizes(ctx context.Context, db Querier) ([]BinaryLog, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var logs []BinaryLog
	for rows.Next() {
		var l BinaryLog
		vals := make([]any, len(cols))
		vals[0] = &l.Name
		if len(cols) > 1 {
			vals[1] = &l.Size
		}
		for i := 2; i < len(cols); i++ {
			vals[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
		}
		logs = append(logs, l)
	}
	return logs, rows.Err()
}

// Behind returns how many bytes of logs lie after offset in file: the
// rest of file and every later one. It reports false when the server no
// longer has file.
func Behind(logs []BinaryLog, file string, offset uint32) (int64, bool) {
	var n int64
	for i := len(logs) - 1; i >= 0; i-- {
		if logs[i].Name == file {
			return n + max(logs[i].Size-int64(offset), 0), true
		}
		n += logs[i].Size
	}
	return 0, false
}
