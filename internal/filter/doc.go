// Package filter decides which databases and tables are captured (the
// capture.databases, capture.tables and capture.exclude keys), for capture
// and snapshots alike, and names the server's own databases that are left
// out unless named.
package filter
