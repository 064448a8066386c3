package bus

import (
	"testing"

	"github.com/databus/databus/sdk"
)

func TestParseMsgIDReversesMsgID(t *testing.T) {
	pos := sdk.Position{ServerID: 7, File: "bin:log.000012", Offset: 4096, Row: 3}
	for _, id := range []string{MsgID(pos), ChunkID(MsgID(pos), 2, 17)} {
		got, err := ParseMsgID(id)
		if err != nil || got != pos {
			t.Errorf("ParseMsgID(%q) = %+v, %v; want %+v", id, got, err, pos)
		}
	}
	if _, err := ParseMsgID("not-an-id"); err == nil {
		t.Error("ParseMsgID accepted a malformed id")
	}
}
