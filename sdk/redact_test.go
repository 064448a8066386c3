package sdk

import "testing"

func TestRedactURLMasksPasswordsAndTokens(t *testing.T) {
	for in, want := range map[string]string{
		"nats://alice:NatsPW_Secret77@10.0.0.1:4222": "nats://alice:***@10.0.0.1:4222",
		"nats://s3cr3tToken@h:4222":                  "nats://***@h:4222",
		"nats://a:p1@h1:4222,nats://b:p2@h2:4222":    "nats://a:***@h1:4222,nats://b:***@h2:4222",
		"nats://h:4222":                              "nats://h:4222",
		"tls://u:p%40ss@h:4222":                      "tls://u:***@h:4222",
		"nats://u:bad pass%zz@h:4222":                "nats://***@h:4222",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
