package sdk

import (
	"fmt"
	"strconv"
	"strings"
)

// gtidSet is a set of transactions by GTID, as intervals of sequence
// numbers of each MySQL server uuid or MariaDB domain: MariaDB's position
// "0-1-42" (each domain's last transaction; the server id does not
// matter) is domain 0's interval 1-42.
type gtidSet map[string][][2]uint64

// parseGTIDSet parses "0-1-42,1-2-7" (MariaDB) or "uuid:1-42:50,uuid2:1-5"
// (MySQL).
func parseGTIDSet(s string) (gtidSet, error) {
	g := gtidSet{}
	if strings.TrimSpace(s) == "" {
		return g, fmt.Errorf("empty GTID set")
	}
	var mariadb, mysql bool
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		uuid, ivs, ok := strings.Cut(part, ":")
		if !ok {
			domain, seq, err := parseMariaDBGTID(part)
			if err != nil {
				return g, fmt.Errorf("GTID set %q: %w", s, err)
			}
			mariadb = true
			if len(g[domain]) == 0 || g[domain][0][1] < seq {
				g[domain] = [][2]uint64{{1, seq}}
			}
			continue
		}
		if len(uuid) != 36 {
			return g, fmt.Errorf("GTID set %q: %q is not a server uuid", s, uuid)
		}
		mysql = true
		for iv := range strings.SplitSeq(ivs, ":") {
			a, b, isRange := strings.Cut(iv, "-")
			lo, err1 := strconv.ParseUint(a, 10, 64)
			hi, err2 := lo, error(nil)
			if isRange {
				hi, err2 = strconv.ParseUint(b, 10, 64)
			}
			if err1 != nil || err2 != nil || lo == 0 || hi < lo {
				return g, fmt.Errorf("GTID set %q: interval %q is not N or N-M", s, iv)
			}
			g[strings.ToLower(uuid)] = append(g[strings.ToLower(uuid)], [2]uint64{lo, hi})
		}
	}
	if mariadb && mysql {
		return g, fmt.Errorf("GTID set %q mixes MariaDB and MySQL GTIDs", s)
	}
	return g, nil
}

// parseMariaDBGTID parses "domain-server-seq" into its domain and sequence
// number.
func parseMariaDBGTID(s string) (domain string, seq uint64, err error) {
	parts := strings.Split(s, "-")
	if len(parts) == 3 {
		_, err1 := strconv.ParseUint(parts[0], 10, 32)
		_, err2 := strconv.ParseUint(parts[1], 10, 32)
		n, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			return parts[0], n, nil
		}
	}
	return "", 0, fmt.Errorf("%q is not a MariaDB GTID (domain-server-sequence) or a MySQL one (uuid:N)", s)
}

// intervals returns the set's intervals of gtid's uuid or domain, and
// gtid's sequence number; ok is false for a GTID that does not parse.
func (g gtidSet) intervals(gtid string) (ivs [][2]uint64, seq uint64, ok bool) {
	key, n, isMySQL := strings.Cut(gtid, ":")
	var err error
	if isMySQL {
		key = strings.ToLower(key)
		seq, err = strconv.ParseUint(n, 10, 64)
	} else {
		key, seq, err = parseMariaDBGTID(gtid)
	}
	return g[key], seq, err == nil
}

// contains reports whether the transaction with GTID gtid ("0-1-42" or
// "uuid:42") is in the set, and, when it is not, whether the set holds the
// transaction just before it in its domain (or uuid): the set then ends
// right before gtid.
func (g gtidSet) contains(gtid string) (in, before bool) {
	ivs, seq, ok := g.intervals(gtid)
	if !ok {
		return false, false
	}
	before = seq == 1
	for _, iv := range ivs {
		if seq >= iv[0] && seq <= iv[1] {
			return true, false
		}
		before = before || iv[1] == seq-1
	}
	return false, before
}

// beyond reports whether the set holds transactions after gtid in gtid's
// domain (or uuid).
func (g gtidSet) beyond(gtid string) bool {
	ivs, seq, ok := g.intervals(gtid)
	for _, iv := range ivs {
		if ok && iv[1] > seq {
			return true
		}
	}
	return false
}
