package capture

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/databus/databus/internal/charset"
)

// queryVars are the session settings a binlog query event carries in its
// status variables.
type queryVars struct {
	// sqlMode is the session's sql_mode (Q_SQL_MODE_CODE), when
	// hasSQLMode.
	sqlMode    uint64
	hasSQLMode bool
	// clientCollation is the collation id of character_set_client
	// (Q_CHARSET_CODE), 0 when not given: the statement's text is in
	// that character set.
	clientCollation uint16
}

// Status variable codes, and the length of the fixed-size ones.
var queryVarLen = map[byte]int{
	0:   4, // Q_FLAGS2_CODE
	1:   8, // Q_SQL_MODE_CODE
	3:   4, // Q_AUTO_INCREMENT
	4:   6, // Q_CHARSET_CODE: client, connection and server collation ids
	7:   2, // Q_LC_TIME_NAMES_CODE
	8:   2, // Q_CHARSET_DATABASE_CODE
	9:   8, // Q_TABLE_MAP_FOR_UPDATE_CODE
	10:  4, // Q_MASTER_DATA_WRITTEN_CODE
	13:  3, // Q_MICROSECONDS
	16:  1, // Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP
	17:  8, // Q_DDL_LOGGED_WITH_XID
	18:  2, // Q_DEFAULT_COLLATION_FOR_UTF8MB4
	19:  1, // Q_SQL_REQUIRE_PRIMARY_KEY
	20:  1, // Q_DEFAULT_TABLE_ENCRYPTION
	128: 3, // MariaDB's Q_HRNOW
	129: 8, // MariaDB's Q_XID
}

// parseQueryVars reads the status variables of a query event up to the
// first one it does not know (whose length it cannot tell).
func parseQueryVars(b []byte) queryVars {
	var v queryVars
	for len(b) > 0 {
		code := b[0]
		b = b[1:]
		n, fixed := queryVarLen[code]
		switch {
		case fixed:
		case code == 2 && len(b) > 0: // Q_CATALOG_CODE: length, text, NUL
			n = 1 + int(b[0]) + 1
		case (code == 5 || code == 6) && len(b) > 0: // Q_TIME_ZONE_CODE, Q_CATALOG_NZ_CODE: length, text
			n = 1 + int(b[0])
		case code == 11 && len(b) > 0: // Q_INVOKER: user, host, each length and text
			n = 1 + int(b[0])
			if len(b) > n {
				n += 1 + int(b[n])
			}
		default:
			return v
		}
		if len(b) < n {
			return v
		}
		switch code {
		case 1:
			v.sqlMode, v.hasSQLMode = binary.LittleEndian.Uint64(b), true
		case 4:
			v.clientCollation = binary.LittleEndian.Uint16(b)
		}
		b = b[n:]
	}
	return v
}

// statementText converts a statement the server logged in the session's
// character_set_client to UTF-8, as the event carries it and a target
// reads it on a utf8mb4 connection.
func (r *reader) statementText(stmt string, vars queryVars) (string, error) {
	cs, known := r.info.Collations[uint64(vars.clientCollation)]
	if vars.clientCollation == 0 || cs == charset.Binary {
		if !utf8.ValidString(stmt) {
			return "", fmt.Errorf("the statement is not UTF-8 and the event does not say its character set")
		}
		return stmt, nil
	}
	if !known {
		return "", fmt.Errorf("character_set_client has collation id %d, unknown to the server", vars.clientCollation)
	}
	text, err := charset.Decode(cs, []byte(stmt))
	if err != nil {
		return "", fmt.Errorf("the statement is not text in its character_set_client %s: %v", cs, err)
	}
	return text, nil
}

// Flags of a MariaDB GTID event's flags_extra for binlog_alter_two_phase.
const (
	flStartAlter    = 2 // FL_START_ALTER_E1: the ALTER starts
	flCommitAlter   = 4 // FL_COMMIT_ALTER_E1: it is done
	flRollbackAlter = 8 // FL_ROLLBACK_ALTER_E1: it failed
)

// alterPhase returns the two-phase ALTER flags of a MariaDB GTID event
// (raw: header, body and, when crc, a CRC32), 0 for any other
// transaction. go-mysql does not decode flags_extra. The body is the
// sequence number (8 bytes), the domain (4), flags2 (1), the commit id
// (8, when flags2 has FL_GROUP_COMMIT_ID), an XA id (when flags2 has
// FL_PREPARED_XA or FL_COMPLETED_XA), then flags_extra when the body goes
// on. MariaDB pads a short body with zero bytes.
func alterPhase(raw []byte, crc bool) byte {
	const headerLen = 19
	end := len(raw)
	if crc {
		end -= 4
	}
	if end < headerLen+13 {
		return 0
	}
	body := raw[headerLen:end]
	flags2, pos := body[12], 13
	if flags2&0x02 != 0 { // FL_GROUP_COMMIT_ID
		pos += 8
	}
	if flags2&(0x40|0x80) != 0 { // FL_PREPARED_XA, FL_COMPLETED_XA: format id, lengths, data
		if len(body) < pos+6 {
			return 0
		}
		pos += 6 + int(body[pos+4]) + int(body[pos+5])
	}
	if pos >= len(body) {
		return 0
	}
	return body[pos] & (flStartAlter | flCommitAlter | flRollbackAlter)
}
