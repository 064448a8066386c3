package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/nats-io/nats.go/jetstream"
)

// TestExampleConsumersKilledMidStream runs the consumers of examples/ (a
// Node program with the plain NATS client, a shell script with the nats
// CLI) against a real stream, kills them with SIGKILL in the middle and
// starts them again: their output must hold every event once, in stream
// order, the Node program's in whole transactions with the values decoded
// as docs/consumers.md says.
func TestExampleConsumersKilledMidStream(t *testing.T) {
	db := testenv.StartMariaDB(t)
	tools := requireExampleTools(t)
	env, url := captureEnv(t, db)
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)
	_, js := connectJS(t, url)
	r := &exampleRig{t: t, js: js, url: url, tools: tools}
	w := newExampleWriter(t, db)
	w.writeFirst()
	ref := r.runNode(w)
	r.runNodeFiltered(w, ref)
	r.runShell(ref)
}

// exampleRig runs the examples against the stream of source e2e.
type exampleRig struct {
	t     *testing.T
	js    jetstream.JetStream
	url   string
	tools exampleTools
}

// startNode starts the Node example with the durable consumer "node",
// writing to out; env adds settings.
func (r *exampleRig) startNode(out string, env ...string) *proc {
	return startProcess(r.t, r.tools.node, append(r.env("node", out), env...), filepath.Join(exampleDir(r.t, "node"), "consumer.js"))
}

// startShell starts the shell example with the durable consumer "shell",
// writing to out.
func (r *exampleRig) startShell(out string) *proc {
	return startProcessGroup(r.t, "bash", r.env("shell", out), filepath.Join(exampleDir(r.t, "shell"), "consume.sh"))
}

func (r *exampleRig) env(durable, out string) []string {
	return []string{"NATS_URL=" + r.url, "SOURCE=e2e", "DURABLE=" + durable, "OUT=" + out, "PATH=" + r.tools.path}
}

// runNode runs the Node example while w writes the rest of its
// transactions, kills it while the server has delivered it the first part
// of a 1,500-row transaction that it has not acknowledged, then again
// right after it wrote a transaction, and checks its output. It returns
// the stream's events.
func (r *exampleRig) runNode(w *exampleWriter) []*sdk.Message {
	t := r.t
	out := filepath.Join(t.TempDir(), "transactions.jsonl")
	p := r.startNode(out)
	waitLines(t, p, out, len(w.txns))
	consumerState(t, r.js, "node", func(i *jetstream.ConsumerInfo) error {
		if i.NumAckPending > 0 {
			return fmt.Errorf("%d deliveries unacknowledged", i.NumAckPending)
		}
		return nil
	})
	ref := r.killMidTransaction(p, w)
	p = r.startNode(out)
	waitLines(t, p, out, countLines(t, out)+1)
	p.kill()
	p = r.startNode(out)
	finishExample(t, p, r.js, "node", out, ref)
	checkNodeOutput(t, out, w.txns, ref)
	return ref
}

// runNodeFiltered runs the Node example with a filter that leaves out the
// last event of transactions (ex.blobs only): they must end all the same,
// the last one when the stream's newest event shows it has.
func (r *exampleRig) runNodeFiltered(w *exampleWriter, ref []*sdk.Message) {
	t := r.t
	var want [][]wantEvent
	for _, tx := range w.txns {
		var evs []wantEvent
		for _, ev := range tx {
			if ev.Table == "blobs" {
				evs = append(evs, ev)
			}
		}
		if len(evs) > 0 {
			want = append(want, evs)
		}
	}
	var blobs []*sdk.Message
	for _, m := range ref {
		if m.Event.Table == "blobs" {
			blobs = append(blobs, m)
		}
	}
	out := filepath.Join(t.TempDir(), "blobs.jsonl")
	p := r.startNode(out, "DURABLE=node-blobs", "FILTER=databus.e2e.ex.blobs.*")
	finishExample(t, p, r.js, "node-blobs", out, blobs)
	checkNodeOutput(t, out, want, blobs)
}

// killMidTransaction has w write the rest of its transactions, the
// 1,500-row one first, while the Node example p is stopped (SIGSTOP) with
// a pull request waiting, so that the server delivers it the first part
// of that transaction; then it kills p. It returns the stream's events.
func (r *exampleRig) killMidTransaction(p *proc, w *exampleWriter) []*sdk.Message {
	t := r.t
	// Paused while the rest is written: the example keeps a pull request
	// waiting, which the server fills once the example is stopped.
	if _, err := r.js.PauseConsumer(t.Context(), sdk.StreamName("e2e"), "node", time.Now().Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	w.writeSecond()
	consumerState(t, r.js, "node", func(i *jetstream.ConsumerInfo) error {
		if i.NumWaiting == 0 {
			return fmt.Errorf("no pull request waiting")
		}
		return nil
	})
	if err := p.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := r.js.ResumeConsumer(t.Context(), sdk.StreamName("e2e"), "node"); err != nil {
		t.Fatal(err)
	}
	w.writeLast() // the server delivers on a new message, not on the resume
	ref := readStream(t, r.url, w.events())
	info := consumerState(t, r.js, "node", func(i *jetstream.ConsumerInfo) error {
		if i.NumAckPending == 0 {
			return fmt.Errorf("nothing delivered to the stopped consumer yet")
		}
		return nil
	})
	next := eventAt(ref, info.Delivered.Stream+1)
	if next == nil || next.Event.Txn.Seq == 0 {
		t.Fatalf("precondition: after delivering up to sequence %d the server's next event must be inside a transaction (%+v)", info.Delivered.Stream, next)
	}
	p.kill()
	t.Logf("node killed with %d deliveries unacknowledged: acknowledged up to %d, delivered up to %d; the next undelivered event is #%d of transaction %s",
		info.NumAckPending, info.AckFloor.Stream, info.Delivered.Stream, next.Event.Txn.Seq, next.Event.Txn.ID)
	return ref
}

// runShell runs the shell example over the whole stream (ref), kills it
// while the consumer has delivered events that are not in its output yet,
// and checks its output.
func (r *exampleRig) runShell(ref []*sdk.Message) {
	t := r.t
	out := filepath.Join(t.TempDir(), "events.jsonl")
	p := r.startShell(out)
	waitLines(t, p, out, 100)
	killWhen(t, p, func() error {
		last, info := lastSeq(t, out), consumerState(t, r.js, "shell", nil)
		if info.Delivered.Stream <= last {
			return fmt.Errorf("delivered up to %d, all in the output", info.Delivered.Stream)
		}
		t.Logf("shell killed with deliveries up to sequence %d, its output up to %d", info.Delivered.Stream, last)
		return nil
	})
	p = r.startShell(out)
	finishExample(t, p, r.js, "shell", out, ref)
	checkShellOutput(t, out, ref)
}

// TestDocSnippetsAreTheExamples keeps the reading snippets of
// docs/events.md and docs/consumers.md true: every JavaScript block is
// pieces of examples/node, each after a line naming its file, word for
// word, and the shell blocks of consumers.md and of events.md's "Reading
// without databus" run (bash -e, the nats CLI) against a stream
// DATABUS_main that holds events.
func TestDocSnippetsAreTheExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the nats CLI, skipped by -short (make test runs it)")
	}
	tools := requireExampleTools(t)
	for _, name := range []string{"events.md", "consumers.md"} {
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
			if err != nil {
				t.Fatal(err)
			}
			blocks := codeBlocks(string(doc))
			if name == "events.md" {
				_, reading, _ := strings.Cut(string(doc), "## Reading without databus")
				blocks["sh"] = codeBlocks(reading)["sh"] // the others show subjects to nats sub
				if len(blocks["sh"]) == 0 {
					t.Fatal(`docs/events.md has no shell block under "## Reading without databus"`)
				}
			}
			if name == "events.md" && len(blocks["js"]) == 0 {
				t.Fatal("docs/events.md has no JavaScript cut from examples/node")
			}
			for _, code := range blocks["js"] {
				checkCutFromNode(t, name, code)
			}
			if len(blocks["sh"]) > 0 {
				runShellSnippets(t, tools, name, strings.Join(blocks["sh"], "\n"))
			}
		})
	}
}

// codeBlocks returns the fenced code blocks of a Markdown page by
// language.
func codeBlocks(doc string) map[string][]string {
	out := map[string][]string{}
	for {
		_, rest, ok := strings.Cut(doc, "```")
		if !ok {
			return out
		}
		lang, rest, _ := strings.Cut(rest, "\n")
		code, after, _ := strings.Cut(rest, "```")
		out[lang] = append(out[lang], code)
		doc = after
	}
}

// checkCutFromNode checks that a JavaScript block is pieces of
// examples/node, each after a line "// examples/node/<file>".
func checkCutFromNode(t *testing.T, doc, code string) {
	t.Helper()
	pieces := strings.Split(code, "// examples/node/")
	if len(pieces) < 2 || strings.TrimSpace(pieces[0]) != "" {
		t.Errorf("docs/%s: a JavaScript block that does not begin with a line naming the piece of examples/node it is:\n%s", doc, code)
		return
	}
	for _, piece := range pieces[1:] {
		file, body, _ := strings.Cut(piece, "\n")
		src, err := os.ReadFile(filepath.Join(exampleDir(t, "node"), file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), body) {
			t.Errorf("docs/%s: the JavaScript after // examples/node/%s is not in that file word for word:\n%s", doc, file, body)
		}
	}
}

// runShellSnippets runs script with bash -e against a new JetStream
// holding stream DATABUS_main with 60 events of shop.orders.
func runShellSnippets(t *testing.T, tools exampleTools, doc, script string) {
	t.Helper()
	srv := testenv.StartJetStream(t)
	nc, js := connectJS(t, srv.URL)
	defer nc.Close()
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DATABUS_main", Subjects: []string{"databus.main.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		ev := fmt.Sprintf(`{"v":1,"op":"insert","db":"shop","table":"orders","txn":{"id":"0-1-%d","seq":0,"last":true},"key":{"id":%d}}`, i+1, i+1)
		if _, err := js.Publish(ctx, "databus.main.shop.orders.insert", []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+tools.path, "NATS_URL="+srv.URL)
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("docs/%s: the shell blocks fail: %v\n%s\n%s", doc, err, script, out)
	}
}

// exampleTools are what the examples need, found or the test fails
// (never skips): scripts/ensure-examples.sh installs them.
type exampleTools struct {
	node string // the node binary
	path string // PATH, with the nats CLI's directory first
}

func requireExampleTools(t *testing.T) exampleTools {
	t.Helper()
	const hint = "run scripts/ensure-examples.sh (make test does)"
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not in PATH: %s", hint)
	}
	if _, err := os.Stat(filepath.Join(exampleDir(t, "node"), "node_modules", "nats", "package.json")); err != nil {
		t.Fatalf("examples/node has no node_modules/nats: %s", hint)
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatalf("jq is not in PATH: %s", hint)
	}
	natsCLI, err := exec.LookPath("nats")
	if err != nil {
		gopath, err := exec.Command("go", "env", "GOPATH").Output()
		natsCLI = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats")
		if _, serr := os.Stat(natsCLI); err != nil || serr != nil {
			t.Fatalf("the nats CLI is neither in PATH nor in $(go env GOPATH)/bin: %s", hint)
		}
	}
	return exampleTools{node: node, path: filepath.Dir(natsCLI) + string(os.PathListSeparator) + os.Getenv("PATH")}
}

// exampleDir is the directory of an example, examples/<name>.
func exampleDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// consumerState waits until the durable consumer's state satisfies ready
// (nil: exists) and returns it.
func consumerState(t *testing.T, js jetstream.JetStream, name string, ready func(*jetstream.ConsumerInfo) error) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	testenv.Eventually(t, 30*time.Second, func() error {
		c, err := js.Consumer(t.Context(), sdk.StreamName("e2e"), name)
		if err == nil {
			info, err = c.Info(t.Context())
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
		if ready == nil {
			return nil
		}
		return ready(info)
	})
	return info
}

// killWhen stops p (SIGSTOP) again and again, letting it run a moment in
// between, until ready returns nil while it is stopped; then it kills it.
func killWhen(t *testing.T, p *proc, ready func() error) {
	t.Helper()
	var err error
	for range 200 {
		if err = p.signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if err = ready(); err == nil {
			p.kill()
			return
		}
		if err := p.signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%v: no moment to kill it found: %v\n%s", p.cmd.Args, err, p.out.String())
}

// waitLines waits until the file out has at least n lines, failing the
// test with p's output when p exits first.
func waitLines(t *testing.T, p *proc, out string, n int) {
	t.Helper()
	testenv.Eventually(t, 90*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("%v exited with %d:\n%s", p.cmd.Args, p.code, p.out.String())
		default:
		}
		if got := countLines(t, out); got < n {
			return fmt.Errorf("%s has %d lines, want %d; %v says:\n%s", out, got, n, p.cmd.Args, p.out.String())
		}
		return nil
	})
}

func countLines(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// outputLines returns the complete lines of file.
func outputLines(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if last := lines[len(lines)-1]; !bytes.HasSuffix(last, []byte("\n")) {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// lastSeq returns the stream sequence of the last event an example wrote
// to file, 0 for none: the last line's "seq" (shell) or that of the last of
// its "events" (Node).
func lastSeq(t *testing.T, file string) uint64 {
	t.Helper()
	lines := outputLines(t, file)
	if len(lines) == 0 {
		return 0
	}
	var l struct {
		Seq    uint64
		Events []struct{ Seq uint64 }
	}
	if err := json.Unmarshal(lines[len(lines)-1], &l); err != nil {
		t.Fatalf("%s: last line: %v", file, err)
	}
	if n := len(l.Events); n > 0 {
		return l.Events[n-1].Seq
	}
	return l.Seq
}

// finishExample waits until the example p has read the whole stream (ref)
// with its durable consumer name, acknowledged it and written its last
// event to out, then stops it with SIGTERM, which it must obey with exit
// status 0.
func finishExample(t *testing.T, p *proc, js jetstream.JetStream, name, out string, ref []*sdk.Message) {
	t.Helper()
	end := ref[len(ref)-1].Sequence
	testenv.Eventually(t, 90*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("%v exited with %d:\n%s", p.cmd.Args, p.code, p.out.String())
		default:
		}
		info := consumerState(t, js, name, nil)
		if last := lastSeq(t, out); info.Delivered.Stream < end || info.NumAckPending > 0 || last < end {
			return fmt.Errorf("consumer %s delivered up to %d (%d unacknowledged), %s up to %d, the stream up to %d; %v says:\n%s",
				name, info.Delivered.Stream, info.NumAckPending, out, last, end, p.cmd.Args, p.out.String())
		}
		return nil
	})
	if code := p.stop(t); code != 0 {
		t.Fatalf("%v exited with %d after SIGTERM:\n%s", p.cmd.Args, code, p.out.String())
	}
}

// readStream reads the first n events of the stream with the Go SDK.
func readStream(t *testing.T, url string, n int) []*sdk.Message {
	t.Helper()
	c, err := sdk.Connect(t.Context(), sdk.Config{URL: url, Source: "e2e", Start: sdk.StartBeginning})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var ms []*sdk.Message
	for len(ms) < n {
		m, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("reading the stream: %d of %d events: %v", len(ms), n, err)
		}
		ms = append(ms, m)
	}
	return ms
}

// eventAt returns the event of ref at stream sequence seq, nil for none.
func eventAt(ref []*sdk.Message, seq uint64) *sdk.Message {
	for _, m := range ref {
		if m.Sequence == seq {
			return m
		}
	}
	return nil
}

// checkSequences checks that got, the stream sequences of the events in an
// output, are those of ref: every event once, in stream order.
func checkSequences(t *testing.T, got []uint64, ref []*sdk.Message) {
	t.Helper()
	for i, m := range ref {
		switch {
		case i >= len(got):
			t.Fatalf("output ends after %d of %d events: sequence %d and later are missing", len(got), len(ref), m.Sequence)
		case got[i] != m.Sequence:
			t.Fatalf("output event %d has sequence %d, want %d (lost, repeated or out of order); sequences around it: %v", i, got[i], m.Sequence, got[max(0, i-3):min(len(got), i+4)])
		}
	}
	if len(got) > len(ref) {
		t.Fatalf("output has %d events after the %d of the stream: %v", len(got)-len(ref), len(ref), got[len(ref):min(len(got), len(ref)+5)])
	}
}

// nodeEvent is an event as the Node example writes it.
type nodeEvent struct {
	Seq    uint64         `json:"seq"`
	Op     string         `json:"op"`
	DB     string         `json:"db"`
	Table  *string        `json:"table"`
	Kind   string         `json:"kind"`
	Key    map[string]any `json:"key"`
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
}

// checkNodeOutput checks the Node example's output, one line per
// transaction, against the transactions written (want) and the stream
// (ref).
func checkNodeOutput(t *testing.T, out string, want [][]wantEvent, ref []*sdk.Message) {
	t.Helper()
	type nodeTxn struct {
		Txn    string      `json:"txn"`
		Events []nodeEvent `json:"events"`
	}
	var txns []nodeTxn
	var seqs []uint64
	for i, l := range outputLines(t, out) {
		var tx nodeTxn
		if err := json.Unmarshal(l, &tx); err != nil {
			t.Fatalf("%s line %d: %v", out, i+1, err)
		}
		for _, ev := range tx.Events {
			seqs = append(seqs, ev.Seq)
		}
		txns = append(txns, tx)
	}
	checkSequences(t, seqs, ref)
	if len(txns) != len(want) {
		t.Fatalf("%d transactions in the output, want %d", len(txns), len(want))
	}
	k := 0
	for i, tx := range txns {
		if len(tx.Events) != len(want[i]) {
			t.Fatalf("transaction %d (%s, from sequence %d): %d events, want %d: not whole", i, tx.Txn, tx.Events[0].Seq, len(tx.Events), len(want[i]))
		}
		for j, got := range tx.Events {
			if id := ref[k].Event.Txn.ID; tx.Txn != id {
				t.Errorf("sequence %d: in transaction %s, want %s", got.Seq, tx.Txn, id)
			}
			k++
			want[i][j].check(t, got)
		}
	}
}

// checkShellOutput checks the shell example's output, one line per event,
// against the stream's events (ref).
func checkShellOutput(t *testing.T, out string, ref []*sdk.Message) {
	t.Helper()
	lines := outputLines(t, out)
	var seqs []uint64
	events := make([]json.RawMessage, len(lines))
	for i, l := range lines {
		var line struct {
			Seq   uint64          `json:"seq"`
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(l, &line); err != nil {
			t.Fatalf("%s line %d: %v", out, i+1, err)
		}
		seqs, events[i] = append(seqs, line.Seq), line.Event
	}
	checkSequences(t, seqs, ref)
	for i, m := range ref {
		got, err := sdk.DecodeEvent(events[i])
		if err != nil {
			t.Fatalf("sequence %d: %v", m.Sequence, err)
		}
		if a, b := mustJSON(t, got), mustJSON(t, m.Event); a != b {
			t.Errorf("sequence %d differs from the stream's event:\n got %.300s\nwant %.300s", m.Sequence, a, b)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantEvent is an event as the Node example must write it: its values
// decoded from what the writer wrote (exampleColumn.decoded), in the JSON
// form the example gives them.
type wantEvent struct {
	Op, DB, Table, Kind string
	Key, Before, After  map[string]any
}

func (w wantEvent) check(t *testing.T, got nodeEvent) {
	t.Helper()
	table := ""
	if got.Table != nil {
		table = *got.Table
	}
	if got.Op != w.Op || got.DB != w.DB || table != w.Table || got.Kind != w.Kind {
		t.Errorf("sequence %d: %s %s.%s %s, want %s %s.%s %s", got.Seq, got.Op, got.DB, table, got.Kind, w.Op, w.DB, w.Table, w.Kind)
		return
	}
	for _, image := range []struct {
		name      string
		got, want map[string]any
	}{{"key", got.Key, w.Key}, {"before", got.Before, w.Before}, {"after", got.After, w.After}} {
		if reflect.DeepEqual(image.got, image.want) {
			continue
		}
		if len(image.got) != len(image.want) {
			t.Errorf("sequence %d: %s has columns %v, want %v", got.Seq, image.name, image.got, image.want)
			continue
		}
		for col, v := range image.want {
			if !reflect.DeepEqual(image.got[col], v) {
				t.Errorf("sequence %d: %s.%s is %.200v, want %.200v", got.Seq, image.name, col, image.got[col], v)
			}
		}
	}
}

// exampleColumn is a column of the examples' tables: how it is declared,
// and the value a reader decodes from a value written to it, as the Node
// example writes it (docs/consumers.md, "Values").
type exampleColumn struct {
	name, decl string
	decoded    func(any) any
}

var (
	asIs       = func(v any) any { return v }
	digits     = func(v any) any { return fmt.Sprint(v) } // BigInt, printed
	hexBytes   = func(v any) any { return hex.EncodeToString(v.([]byte)) }
	parsedJSON = func(v any) any {
		var x any
		if err := json.Unmarshal([]byte(v.(string)), &x); err != nil {
			panic(err)
		}
		return x
	}
	setMembers = func(v any) any {
		if v == "" {
			return []string{}
		}
		return strings.Split(v.(string), ",")
	}
)

// valsColumns are the columns of ex.vals, one per encoding a reader must
// decode (docs/events.md, "Values per MySQL type"); blobsColumns those of
// ex.blobs, whose big rows are published in chunks.
var (
	valsColumns = []exampleColumn{
		{"id", "BIGINT PRIMARY KEY", digits},
		{"u", "BIGINT UNSIGNED", digits},
		{"d", "DECIMAL(65,30)", asIs},
		{"b", "VARBINARY(64)", hexBytes},
		{"j", "JSON", parsedJSON},
		{"day", "DATE", asIs},
		{"at", "DATETIME(6)", asIs},
		{"s", "SET('a','b','c')", setMembers},
		{"txt", "VARCHAR(100) CHARACTER SET utf8mb4", asIs},
		{"n", "INT", asIs},
	}
	blobsColumns = []exampleColumn{
		{"id", "INT PRIMARY KEY", asIs},
		{"data", "LONGBLOB", hexBytes},
	}
)

// valsRow returns row i of ex.vals with primary key id: the values cycle
// through edge cases of each type, NULL among them.
func valsRow(id int64, i int) []any {
	pick := func(vs ...any) any { return vs[i%len(vs)] }
	return []any{
		id,
		pick(nil, uint64(math.MaxUint64), uint64(1)<<63, uint64(i)),
		pick(nil, "-12345678901234567890123456789012345.123456789012345678901234567891", "0.000000000000000000000000000001",
			fmt.Sprintf("%d.%030d", i, i)),
		pick(nil, []byte{}, []byte{0, 0xff, 0, 0xfe, 0x80}, []byte{0, 0, 0}, []byte(fmt.Sprint(i))),
		pick(nil, `{"a":[1,2.5,"x"],"b":null}`, `[]`, `"text"`, fmt.Sprintf(`{"i":%d}`, i)),
		pick(nil, "0000-00-00", "2024-00-00", "2024-02-29"),
		pick(nil, "0000-00-00 00:00:00.000000", "2024-02-29 23:59:59.999999", "1000-01-01 00:00:00.000001"),
		pick(nil, "", "a", "a,c", "a,b,c"),
		pick(nil, `Ann 😀 'it''s' \ "q"`, "", "café"),
		i,
	}
}

// exampleWriter writes the examples' transactions to MariaDB and records
// the events each must become.
type exampleWriter struct {
	t    *testing.T
	conn *sql.Conn
	tx   *sql.Tx
	// rows holds the current rows of ex.vals by id.
	rows map[int64][]any
	// extra is set once ex.vals has the column extra (DEFAULT 7).
	extra bool
	// txns are the transactions written, in commit order; open is the
	// one being written.
	txns [][]wantEvent
	open []wantEvent
}

func newExampleWriter(t *testing.T, db *testenv.MariaDB) *exampleWriter {
	conn, err := db.DB(t).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Zero and partial dates ("0000-00-00", "2024-00-00") need a sql_mode
	// without NO_ZERO_DATE, NO_ZERO_IN_DATE and strict mode.
	if _, err := conn.ExecContext(t.Context(), "SET SESSION sql_mode = ''"); err != nil {
		t.Fatal(err)
	}
	return &exampleWriter{t: t, conn: conn, rows: map[int64][]any{}}
}

// writeFirst creates the tables and writes a few small transactions.
func (w *exampleWriter) writeFirst() {
	w.ddl("create_database", "", "CREATE DATABASE ex")
	w.ddl("create_table", "vals", createTable("vals", valsColumns))
	w.ddl("create_table", "blobs", createTable("blobs", blobsColumns))
	w.begin()
	w.insert("vals", valsColumns, valsRow(math.MinInt64, 1), valsRow(math.MaxInt64, 2), valsRow(1<<53+1, 3), valsRow(-(1<<53+1), 4))
	w.commit()
	w.begin()
	for i := range 3 {
		w.insert("vals", valsColumns, valsRow(int64(i+1), i))
	}
	w.update(math.MaxInt64, "s", "")
	w.update(1<<53+1, "b", []byte{0xff, 0, 0xc3})
	w.remove(-(1<<53 + 1))
	w.commit()
	w.begin()
	w.insert("vals", valsColumns, valsRow(10, 10))
	w.commit()
}

// writeSecond writes a transaction of 1,500 rows (more than the server's
// default max_ack_pending of 1000), DDL, a transaction over two tables
// and a row too large for one message.
func (w *exampleWriter) writeSecond() {
	w.begin()
	for part := range 3 {
		var rows [][]any
		for i := range 500 {
			n := 1000 + part*500 + i
			rows = append(rows, valsRow(int64(n), n))
		}
		w.insert("vals", valsColumns, rows...)
	}
	w.commit()
	w.ddl("alter_table", "vals", "ALTER TABLE ex.vals ADD COLUMN extra INT DEFAULT 7")
	w.extra = true
	w.begin()
	w.update(1000, "txt", "changed")
	w.insert("blobs", blobsColumns, []any{1, []byte{0, 1, 2}})
	w.remove(1001)
	w.commit()
	big := bytes.Repeat([]byte{0, 0xff, 'x', 0x80}, 3<<18) // 3 MiB: an event of more than 8 MiB
	w.begin()
	w.insert("blobs", blobsColumns, []any{2, big})
	w.commit()
}

// writeLast writes a last transaction, over two tables.
func (w *exampleWriter) writeLast() {
	w.begin()
	w.insert("blobs", blobsColumns, []any{3, []byte("last")})
	w.insert("vals", valsColumns, valsRow(20, 20), valsRow(21, 21))
	w.commit()
}

func createTable(name string, cols []exampleColumn) string {
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = c.name + " " + c.decl
	}
	return fmt.Sprintf("CREATE TABLE ex.%s (%s)", name, strings.Join(defs, ", "))
}

// events returns how many events the writer wrote.
func (w *exampleWriter) events() int {
	n := 0
	for _, tx := range w.txns {
		n += len(tx)
	}
	return n
}

func (w *exampleWriter) ddl(kind, table, stmt string) {
	w.t.Helper()
	if _, err := w.conn.ExecContext(w.t.Context(), stmt); err != nil {
		w.t.Fatalf("%s: %v", stmt, err)
	}
	w.txns = append(w.txns, []wantEvent{{Op: "ddl", DB: "ex", Table: table, Kind: kind}})
}

func (w *exampleWriter) begin() {
	w.t.Helper()
	var err error
	if w.tx, err = w.conn.BeginTx(w.t.Context(), nil); err != nil {
		w.t.Fatal(err)
	}
}

func (w *exampleWriter) commit() {
	w.t.Helper()
	if err := w.tx.Commit(); err != nil {
		w.t.Fatal(err)
	}
	w.txns, w.open = append(w.txns, w.open), nil
}

func (w *exampleWriter) exec(query string, args ...any) {
	w.t.Helper()
	if _, err := w.tx.ExecContext(w.t.Context(), query, args...); err != nil {
		w.t.Fatalf("%.200s: %v", query, err)
	}
}

// insert inserts rows into table with one statement.
func (w *exampleWriter) insert(table string, cols []exampleColumn, rows ...[]any) {
	w.t.Helper()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	var args []any
	for _, r := range rows {
		args = append(args, r...)
		ev := wantEvent{Op: "insert", DB: "ex", Table: table, After: w.decoded(table, cols, r)}
		ev.Key = map[string]any{"id": ev.After["id"]}
		w.open = append(w.open, ev)
		if table == "vals" {
			w.rows[r[0].(int64)] = r
		}
	}
	w.exec(fmt.Sprintf("INSERT INTO ex.%s (%s) VALUES %s", table, strings.Join(names, ","), strings.TrimSuffix(strings.Repeat(one+",", len(rows)), ",")), args...)
}

// update sets column col of ex.vals' row id to v.
func (w *exampleWriter) update(id int64, col string, v any) {
	w.t.Helper()
	before := w.rows[id]
	after := append([]any(nil), before...)
	for i, c := range valsColumns {
		if c.name == col {
			after[i] = v
		}
	}
	w.exec(fmt.Sprintf("UPDATE ex.vals SET %s = ? WHERE id = ?", col), v, id)
	w.rows[id] = after
	ev := wantEvent{Op: "update", DB: "ex", Table: "vals", Before: w.decoded("vals", valsColumns, before), After: w.decoded("vals", valsColumns, after)}
	ev.Key = map[string]any{"id": ev.After["id"]}
	w.open = append(w.open, ev)
}

// remove deletes ex.vals' row id.
func (w *exampleWriter) remove(id int64) {
	w.t.Helper()
	w.exec("DELETE FROM ex.vals WHERE id = ?", id)
	ev := wantEvent{Op: "delete", DB: "ex", Table: "vals", Before: w.decoded("vals", valsColumns, w.rows[id])}
	ev.Key = map[string]any{"id": ev.Before["id"]}
	delete(w.rows, id)
	w.open = append(w.open, ev)
}

// decoded returns row as the Node example writes it: each value decoded,
// in the form JSON gives it back (numbers float64, lists []any).
func (w *exampleWriter) decoded(table string, cols []exampleColumn, row []any) map[string]any {
	m := map[string]any{}
	for i, c := range cols {
		if row[i] != nil {
			m[c.name] = c.decoded(row[i])
		} else {
			m[c.name] = nil
		}
	}
	if table == "vals" && w.extra {
		m["extra"] = 7
	}
	b, err := json.Marshal(m)
	if err != nil {
		w.t.Fatal(err)
	}
	m = nil
	if err := json.Unmarshal(b, &m); err != nil {
		w.t.Fatal(err)
	}
	return m
}
