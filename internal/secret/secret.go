// Package secret keeps credentials out of what databus prints: URLs and
// DSNs with a password or token are shown with it replaced.
package secret

import (
	"strings"

	"github.com/databus/databus/sdk"
)

// Mask replaces a secret wherever it is shown.
const Mask = sdk.RedactMask

// URL returns urls with their passwords and tokens masked: see
// [sdk.RedactURL].
func URL(urls string) string { return sdk.RedactURL(urls) }

// DSN returns a go-sql-driver DSN (user:password@tcp(host:port)/db) with
// its password replaced by [Mask].
func DSN(dsn string) string {
	at := strings.LastIndexByte(dsn, '@')
	if at < 0 {
		return dsn
	}
	user, _, ok := strings.Cut(dsn[:at], ":")
	if !ok {
		return dsn
	}
	return user + ":" + Mask + dsn[at:]
}
