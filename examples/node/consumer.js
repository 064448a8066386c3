// A databus consumer written with nothing but the NATS client (npm package
// "nats" 2.x). It follows docs/consumers.md: a durable pull consumer,
// events in stream order, whole transactions, chunked events joined,
// events removed before they were read reported, and every transaction
// written exactly once to an output file, one JSON line per transaction,
// its values decoded (decode.js).
//
// Settings (environment):
//   NATS_URL  NATS server URLs, comma-separated (default nats://127.0.0.1:4222)
//   SOURCE    databus source name (default "default"): stream DATABUS_<SOURCE>
//   DURABLE   durable consumer name (default "node-example")
//   FILTER    subject filter of five tokens (default databus.<SOURCE>.*.*.*, every
//             event), e.g. databus.<SOURCE>.shop.orders.* or databus.<SOURCE>.shop.*.*
//   OUT       output file (default transactions.jsonl); OUT.state records how far
//             it is written
//
// It runs until SIGINT or SIGTERM (exit status 0). Errors, among them events
// the stream removed before they were read, stop it with exit status 1; a
// bad setting with 2.

import fs from "node:fs";
import path from "node:path";
import { connect, AckPolicy, ConsumerEvents, DeliverPolicy, Events, nanos } from "nats";
import { decodeKey, decodeRow, printable } from "./decode.js";

const source = process.env.SOURCE || "default";
const stream = `DATABUS_${source}`;
const everyEvent = `databus.${source}.*.*.*`; // leader messages have other subjects
const filter = process.env.FILTER || everyEvent;
const filtered = filter !== everyEvent;
if (!filter.startsWith(`databus.${source}.`) || filter.split(".").length !== 5) {
  console.error(`databus node example: FILTER ${filter}: want five tokens, databus.${source}.<db>.<table>.<op> with wildcards`);
  process.exit(2);
}
const durable = process.env.DURABLE || "node-example";

// The durable consumer's settings. An acknowledgement covers every earlier
// message (ack_policy all), and a transaction is acknowledged at its end,
// so max_ack_pending must exceed the largest transaction: the server's
// default of 1000 would stop delivery for good in the middle of a bigger
// one.
const consumerConfig = {
  durable_name: durable,
  ack_policy: AckPolicy.All,
  ack_wait: nanos(30_000),
  max_ack_pending: 10_000,
  filter_subject: filter,
};

// Output is the output file and its state file, which together hold the
// consumer's position: the state names the stream sequence of the last
// event written and the output's length then. Each transaction is appended
// and synced, then the state is replaced (rename), then the transaction is
// acknowledged. A crash before the rename leaves bytes past the recorded
// length: they are cut off at start, and the transaction comes again (it
// was not acknowledged). A crash after it leaves the transaction
// unacknowledged: it comes again and is skipped by its sequence.
class Output {
  constructor(file) {
    this.file = file;
    this.stateFile = `${file}.state`;
    let state = { seq: 0, size: 0 };
    try {
      state = JSON.parse(fs.readFileSync(this.stateFile, "utf8"));
    } catch (err) {
      if (err.code !== "ENOENT") {
        throw new Error(`reading ${this.stateFile}: ${err.message}`);
      }
    }
    this.seq = state.seq;
    this.size = state.size;
    this.fd = fs.openSync(file, "a");
    const have = fs.fstatSync(this.fd).size;
    if (have < this.size) {
      throw new Error(`${file} holds ${have} bytes, ${this.stateFile} says ${this.size} were written: restore both or remove both`);
    }
    fs.ftruncateSync(this.fd, this.size); // a transaction written after the last state
  }

  // append writes one line whose last event has stream sequence seq.
  append(line, seq) {
    const buf = Buffer.from(`${line}\n`);
    for (let off = 0; off < buf.length; ) {
      off += fs.writeSync(this.fd, buf, off);
    }
    fs.fsyncSync(this.fd);
    const tmp = `${this.stateFile}.tmp`;
    const fd = fs.openSync(tmp, "w");
    fs.writeSync(fd, JSON.stringify({ seq, size: this.size + buf.length }) + "\n");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, this.stateFile);
    const dir = fs.openSync(path.dirname(path.resolve(this.stateFile)), "r");
    fs.fsyncSync(dir);
    fs.closeSync(dir);
    this.seq = seq;
    this.size += buf.length;
  }
}

const isNotFound = (err) => err?.api_error?.code === 404 || err?.code === "404";

// prepareConsumer returns the durable consumer, ready to deliver the event
// after the last one acknowledged. A consumer killed with messages
// delivered but not acknowledged would go on with the next undelivered
// message, in the middle of a transaction, and bring the others back only
// after their ack wait, out of order: such a consumer is deleted and
// created again at its acknowledgement floor + 1, as is one whose settings
// differ, one the server lost (after `written`, the output's position), and
// one acknowledged past the output (an output restored from a backup).
async function prepareConsumer(jsm, written) {
  let info = null;
  try {
    info = await jsm.consumers.info(stream, durable);
  } catch (err) {
    if (!isNotFound(err)) {
      throw err;
    }
  }
  const c = info?.config;
  if (
    info &&
    info.num_ack_pending === 0 &&
    info.delivered.stream_seq <= info.ack_floor.stream_seq &&
    info.ack_floor.stream_seq <= written &&
    c.ack_policy === AckPolicy.All &&
    c.filter_subject === filter &&
    c.max_ack_pending >= consumerConfig.max_ack_pending
  ) {
    return info;
  }
  const start = Math.min(info ? info.ack_floor.stream_seq : written, written) + 1;
  if (info) {
    await jsm.consumers.delete(stream, durable);
  }
  const at = start === 1 ? { deliver_policy: DeliverPolicy.All } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start };
  return jsm.consumers.add(stream, { ...consumerConfig, ...at });
}

// checkRemoved fails when the stream no longer holds events from sequence
// `from` on that this consumer has not read (its retention limits removed
// them): docs/events.md, "Gaps".
async function checkRemoved(jsm, from) {
  const { state } = await jsm.streams.info(stream);
  if (state.first_seq > from) {
    throw new Error(
      `events lost: stream ${stream} no longer holds sequences ${from} to ${state.first_seq - 1}, which this consumer had not read` +
        (filtered ? " (some may not have matched its filter)" : "") +
        "; start again from a snapshot",
    );
  }
}

// newestEvent returns the stream's newest event and its sequence, or null
// while it is the first chunks of an event still being published.
async function newestEvent(jsm) {
  let m;
  try {
    m = await jsm.streams.getMessage(stream, { last_by_subj: everyEvent });
  } catch (err) {
    if (isNotFound(err)) {
      return null;
    }
    throw err;
  }
  const chunk = m.header?.get("Databus-Chunk");
  if (!chunk) {
    return { ev: JSON.parse(new TextDecoder().decode(m.data)), seq: m.seq };
  }
  const [i, n] = chunk.split("/").map(Number);
  if (i < n) {
    return null;
  }
  const parts = [];
  for (let s = m.seq - n + 1; s <= m.seq; s++) {
    parts.push((await jsm.streams.getMessage(stream, { seq: s })).data);
  }
  return { ev: JSON.parse(Buffer.concat(parts).toString("utf8")), seq: m.seq };
}

// txnEnded reports whether the open transaction txn (its last event so
// far at stream sequence txn.lastSeq) can have no more events for this
// consumer: its filter may have left out the event marked last. That is so when the stream's
// newest event belongs to a later transaction (or is this one's last:
// capture publishes in order) and the server has nothing left to deliver.
async function txnEnded(jsm, txn) {
  const newest = await newestEvent(jsm);
  if (!newest || newest.seq <= txn.lastSeq || (newest.ev.txn.id === txn.id && !newest.ev.txn.last)) {
    return false;
  }
  const info = await jsm.consumers.info(stream, durable);
  return info.num_pending === 0 && info.delivered.stream_seq <= txn.lastSeq;
}

// describe returns an event as written to the output: values decoded
// (bigint as digits, bytes as hex, JSON parsed, SET as an array).
function describe(seq, ev) {
  if (ev.op === "ddl") {
    // A DDL has no key, before, after or columns, and no table when it
    // touches a database only (CREATE DATABASE).
    return { seq, op: ev.op, db: ev.db, table: ev.table ?? null, kind: ev.ddl?.kind ?? null, sql: ev.sql };
  }
  const print = (row) => row && Object.fromEntries(Object.entries(row).map(([k, v]) => [k, printable(v)]));
  const out = { seq, op: ev.op, db: ev.db, table: ev.table, key: print(decodeKey(ev.columns, ev.key)) };
  for (const image of ["before", "after"]) {
    if (ev[image]) {
      out[image] = print(decodeRow(ev.columns, ev[image]));
    }
  }
  return out;
}

// deliver reads events until delivery must start again (a reconnect, or
// deliveries lost in flight) or stop() is called, writing each transaction
// once it is whole.
async function deliver(nc, jsm, out, state) {
  const info = await prepareConsumer(jsm, out.seq);
  let seen = info.delivered.stream_seq; // stream sequence of the last message received
  if (out.seq > 0) {
    await checkRemoved(jsm, out.seq + 1);
  } else {
    seen = Math.max(seen, (await jsm.streams.info(stream)).state.first_seq - 1); // a first start begins at the first event kept
  }
  const consumer = await nc.jetstream().consumers.get(stream, durable);
  // Pulled by bytes, not by count: the messages of a chunked event are up
  // to the server's max payload each, and a client that falls too far
  // behind is disconnected.
  const messages = await consumer.consume({ max_bytes: Math.max(16 << 20, 2 * nc.info.max_payload) });
  state.messages = messages;
  let lost = false; // the server stopped delivering to this consumer (restarted, consumer deleted)
  (async () => {
    for await (const s of await messages.status()) {
      if ([ConsumerEvents.ConsumerDeleted, ConsumerEvents.ConsumerNotFound, ConsumerEvents.HeartbeatsMissed].includes(s.type)) {
        lost = true;
      }
    }
  })();
  const it = messages[Symbol.asyncIterator]();
  let pending = null; // it.next() not settled yet
  let delivered = info.delivered.consumer_seq; // delivery sequence of the last message received
  let chunks = [];
  let txn = null; // the transaction being collected: { id, events, lastSeq, msg }

  const finish = () => {
    out.append(JSON.stringify({ txn: txn.id, events: txn.events }), txn.lastSeq);
    txn.msg.ack(); // after the output: covers every message of the transaction
    txn = null;
  };

  try {
    for (;;) {
      pending ??= it.next();
      let timer;
      const r = await Promise.race([pending, new Promise((resolve) => (timer = setTimeout(resolve, filtered ? 250 : 1000, null)))]);
      clearTimeout(timer);
      if (state.stopping) {
        return;
      }
      if (state.reconnected || lost) {
        // Messages in flight when the connection broke count as
        // delivered: an acknowledgement of a later one would cover them.
        // Start again after the last acknowledged event.
        state.reconnected = false;
        return;
      }
      if (r === null) {
        if (txn && filtered && (await txnEnded(jsm, txn))) {
          finish();
        }
        continue;
      }
      pending = null;
      if (r.done) {
        throw new Error("delivery stopped");
      }
      const m = r.value;
      if (m.info.deliverySequence !== delivered + 1) {
        return; // deliveries lost in flight
      }
      delivered = m.info.deliverySequence;
      const seq = m.seq;
      if (seq <= seen) {
        continue; // delivered again after its ack wait: already collected
      }
      if (seq > seen + 1) {
        await checkRemoved(jsm, seen + 1); // a filter or a leader message skips sequences too
      }
      seen = seq;
      if (seq <= out.seq) {
        m.ack(); // in the output already: written before a crash, not acknowledged
        continue;
      }
      let data = m.data;
      const chunk = m.headers?.get("Databus-Chunk");
      if (chunk) {
        // An event larger than one message: chunks i/n. Collecting starts
        // again at every 1/n (capture killed between chunks publishes the
        // whole event again).
        const [i, n] = chunk.split("/").map(Number);
        if (i === 1) {
          chunks = [];
        }
        if (i !== chunks.length + 1) {
          continue; // the rest of an event whose start came before this consumer's
        }
        chunks.push(data);
        if (i < n) {
          continue;
        }
        data = Buffer.concat(chunks);
        chunks = [];
      }
      const ev = JSON.parse(new TextDecoder().decode(data));
      if (ev.v > 1) {
        throw new Error(`stream sequence ${seq}: event format v${ev.v}, this consumer reads v1`);
      }
      if (txn && ev.txn.id !== txn.id) {
        finish(); // its last event was filtered out
      }
      txn ??= { id: ev.txn.id, events: [] };
      txn.events.push(describe(seq, ev));
      txn.lastSeq = seq;
      txn.msg = m;
      if (ev.txn.last) {
        finish();
      }
    }
  } finally {
    state.messages = null;
    const closed = messages.close();
    // The iterator carries out the close: read it to its end, dropping
    // what it still holds (unacknowledged, it comes again).
    while (!(await (pending ?? it.next())).done) {
      pending = null;
    }
    await closed;
  }
}

async function main() {
  const out = new Output(process.env.OUT || "transactions.jsonl");
  const servers = (process.env.NATS_URL || "nats://127.0.0.1:4222").split(",");
  const nc = await connect({ servers, name: "databus-node-example", maxReconnectAttempts: -1 });
  const jsm = await nc.jetstreamManager();
  const state = { stopping: false, reconnected: false, messages: null };
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Reconnect) {
        state.reconnected = true;
      }
    }
  })();
  const stop = () => {
    state.stopping = true;
    state.messages?.close().catch(() => {}); // deliver() returns at once
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  while (!state.stopping) {
    await deliver(nc, jsm, out, state);
  }
  await nc.drain(); // sends the last acknowledgements
}

main().catch((err) => {
  console.error(`databus node example: ${err.message}`);
  process.exit(1);
});
