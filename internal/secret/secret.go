// Package secret keeps credentials out of what databus prints: URLs and
// DSNs with a password or token are shown with it replaced.
package secret

import (
	"net/url"
	"strings"
)

// Mask replaces a secret wherever it is shown.
const Mask = "***"

// URL returns urls (one URL or several, comma-separated, as nats.url takes
// them) with the password of each, or its token (a user without a
// password, nats://token@host), replaced by [Mask].
func URL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = oneURL(p)
	}
	return strings.Join(parts, ",")
}

func oneURL(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil {
		// Unparsable: hide everything between the scheme and the '@'.
		if scheme, _, ok := strings.Cut(s[:at], "://"); ok {
			return scheme + "://" + Mask + s[at:]
		}
		return Mask + s[at:]
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), Mask)
	} else {
		u.User = url.User(Mask) // a token
	}
	return strings.Replace(u.String(), url.QueryEscape(Mask), Mask, 1)
}

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
