package sdk

import (
	"net/url"
	"strings"
)

// RedactMask replaces a password or token in what [RedactURL] returns.
const RedactMask = "***"

// RedactURL returns urls (one URL or several, comma-separated, as nats.url takes
// them) with the password of each, or its token (a user without a
// password, nats://token@host), replaced by [RedactMask]. Use it to log the URL
// given in [Config.URL].
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactOneURL(p)
	}
	return strings.Join(parts, ",")
}

func redactOneURL(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil {
		// Unparsable: hide everything between the scheme and the '@'.
		if scheme, _, ok := strings.Cut(s[:at], "://"); ok {
			return scheme + "://" + RedactMask + s[at:]
		}
		return RedactMask + s[at:]
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), RedactMask)
	} else {
		u.User = url.User(RedactMask) // a token
	}
	return strings.Replace(u.String(), url.QueryEscape(RedactMask), RedactMask, 1)
}
