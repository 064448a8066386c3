package embedded

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Role is what a user of the embedded server may do.
type Role string

// The roles of the embedded server's users.
const (
	// RoleAdmin may do anything.
	RoleAdmin Role = "admin"
	// RoleCapture is databus itself (`databus run`, `databus snapshot`):
	// it publishes events, writes the state bucket and the snapshots.
	RoleCapture Role = "capture"
	// RoleReader reads the streams, the state and the snapshots, creates,
	// reads and acknowledges consumers, and writes only the consumer keys
	// (consumer.<name>.*) of the state buckets. It cannot publish events,
	// change the checkpoint or delete snapshots.
	RoleReader Role = "reader"
)

// User is one user of the embedded server: a name and password, or an
// nkey.
type User struct {
	Name, Password string
	// Nkey is the user's public nkey (U…), instead of Name and Password.
	Nkey string
	Role Role
}

// Subjects the roles are given. JetStream's API is requested on $JS.API.>;
// key-value and object stores write on $KV.> and $O.>; replies come to
// _INBOX.>. The admin service of `databus run` (internal/ops) listens on
// $DATABUS.ADMIN.<source>.<endpoint> and answers micro's $SRV.>: a reader
// and the capture user may ask it (info, and `nats micro ls|info|stats`),
// only an admin may change anything (loglevel, snapshot, pause, resume).
var (
	readerPublish = []string{
		"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
		"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
		"$JS.API.CONSUMER.>", "$JS.ACK.>", "$JS.FC.>",
		"$KV.*.consumer.>",
		"$SRV.>", "$DATABUS.ADMIN.*.info",
	}
	readerSubscribe = []string{"_INBOX.>", "databus.>"}
	capturePublish  = []string{"databus.>", "$JS.API.>", "$KV.>", "$O.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>", "$SRV.>", "$DATABUS.ADMIN.*.info"}
	// Capture answers requests (replies to _INBOX.>) and serves $SRV.>
	// and the admin service, but does not listen on JetStream's API: no
	// client but the server answers it.
	captureSubscribe = []string{"_INBOX.>", "databus.>", "$SRV.>", "$KV.>", "$O.>", "$DATABUS.ADMIN.>"}
)

// permissions returns what role may do; nil is everything.
func permissions(r Role) (*server.Permissions, error) {
	switch r {
	case RoleAdmin:
		return nil, nil
	case RoleCapture:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: capturePublish},
			Subscribe: &server.SubjectPermission{Allow: captureSubscribe},
		}, nil
	case RoleReader:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: readerPublish},
			Subscribe: &server.SubjectPermission{Allow: readerSubscribe},
		}, nil
	}
	return nil, fmt.Errorf("unknown role %q: want admin, capture or reader", r)
}

// applyUsers sets the users of cfg on opts.
func applyUsers(opts *server.Options, users []User) error {
	for _, u := range users {
		perms, err := permissions(u.Role)
		if err != nil {
			return err
		}
		switch {
		case u.Nkey != "":
			if !nkeys.IsValidPublicUserKey(u.Nkey) {
				return fmt.Errorf("the %s user's nkey is not a public user nkey (U…): give the public key, keep the seed (SU…) for the client", u.Role)
			}
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Permissions: perms})
		case u.Name != "" && u.Password != "":
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
		default:
			return fmt.Errorf("the %s user needs a name and password, or an nkey", u.Role)
		}
	}
	return nil
}
