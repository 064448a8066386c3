package sdk

import (
	"fmt"
	"strconv"
	"strings"
)

// gtidSet is a set of transactions by GTID: MariaDB's position (each
// domain's last sequence number; the server id does not matter) or MySQL's
// intervals of each server uuid.
type gtidSet struct {
	mariadb map[uint32]uint64
	mysql   map[string][][2]uint64
}

// parseGTIDSet parses "0-1-42,1-2-7" (MariaDB) or "uuid:1-42:50,uuid2:1-5"
// (MySQL).
func parseGTIDSet(s string) (gtidSet, error) {
	var g gtidSet
	if strings.TrimSpace(s) == "" {
		return g, fmt.Errorf("empty GTID set")
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if uuid, ivs, ok := strings.Cut(part, ":"); ok {
			if g.mysql == nil {
				g.mysql = map[string][][2]uint64{}
			}
			if len(uuid) != 36 {
				return g, fmt.Errorf("GTID set %q: %q is not a server uuid", s, uuid)
			}
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
				key := strings.ToLower(uuid)
				g.mysql[key] = append(g.mysql[key], [2]uint64{lo, hi})
			}
			continue
		}
		domain, _, seq, err := parseMariaDBGTID(part)
		if err != nil {
			return g, fmt.Errorf("GTID set %q: %w", s, err)
		}
		if g.mariadb == nil {
			g.mariadb = map[uint32]uint64{}
		}
		g.mariadb[domain] = max(g.mariadb[domain], seq)
	}
	if g.mariadb != nil && g.mysql != nil {
		return g, fmt.Errorf("GTID set %q mixes MariaDB and MySQL GTIDs", s)
	}
	return g, nil
}

// parseMariaDBGTID parses "domain-server-seq".
func parseMariaDBGTID(s string) (domain, server uint32, seq uint64, err error) {
	parts := strings.Split(s, "-")
	if len(parts) == 3 {
		d, err1 := strconv.ParseUint(parts[0], 10, 32)
		sv, err2 := strconv.ParseUint(parts[1], 10, 32)
		n, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			return uint32(d), uint32(sv), n, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("%q is not a MariaDB GTID (domain-server-sequence) or a MySQL one (uuid:N)", s)
}

// contains reports whether the transaction with GTID gtid ("0-1-42" or
// "uuid:42") is in the set, and, when it is not, whether the set holds the
// transaction just before it in its domain (or uuid): the set then ends
// right before gtid.
func (g gtidSet) contains(gtid string) (in, before bool) {
	if uuid, n, ok := strings.Cut(gtid, ":"); ok {
		seq, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return false, false
		}
		before = seq == 1
		for _, iv := range g.mysql[strings.ToLower(uuid)] {
			if seq >= iv[0] && seq <= iv[1] {
				return true, false
			}
			before = before || iv[1] == seq-1
		}
		return false, before
	}
	domain, _, seq, err := parseMariaDBGTID(gtid)
	if err != nil {
		return false, false
	}
	last, ok := g.mariadb[domain]
	return ok && seq <= last, ok && last == seq-1 || !ok && seq == 1
}

// beyond reports whether the set holds transactions after gtid in gtid's
// domain (or uuid).
func (g gtidSet) beyond(gtid string) bool {
	if uuid, n, ok := strings.Cut(gtid, ":"); ok {
		seq, err := strconv.ParseUint(n, 10, 64)
		for _, iv := range g.mysql[strings.ToLower(uuid)] {
			if err == nil && iv[1] > seq {
				return true
			}
		}
		return false
	}
	domain, _, seq, err := parseMariaDBGTID(gtid)
	return err == nil && g.mariadb[domain] > seq
}
