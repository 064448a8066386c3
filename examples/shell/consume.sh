#!/usr/bin/env bash
# Reads the events of a databus source with the nats CLI (v0.5.1: its
# output format is parsed) and jq, through a durable pull consumer, and
# appends each event once, in stream order, to an output file as a JSON
# line {"seq": <stream sequence>, "event": <the event as published>}.
# docs/consumers.md explains the rules it follows.
#
# Settings (environment):
#   NATS_URL  NATS server URL (default nats://127.0.0.1:4222)
#   SOURCE    databus source name (default "default"): stream DATABUS_<SOURCE>
#   DURABLE   durable consumer name (default "shell-example")
#   FILTER    subject filter of five tokens (default databus.<SOURCE>.*.*.*)
#   OUT       output file (default events.jsonl)
#   BATCH     messages per `nats consumer next` call (default 100)
#
# What it does: events in stream order, each written once across crashes
# (the output's last line is the position), chunked events joined, events
# the stream removed before they were read reported (exit 1), a consumer
# deleted under it or deliveries lost on the way handled by creating the
# consumer again.
# What it does not: gather transactions (each line is one event; its
# txn.id and txn.last say where a transaction ends), decode values (they
# stay as docs/events.md encodes them), wait for NATS (it stops when a
# request fails; run it under a supervisor). It runs until SIGINT or
# SIGTERM (exit status 0); a bad setting exits 2.
set -euo pipefail

source=${SOURCE:-default}
stream=DATABUS_$source
durable=${DURABLE:-shell-example}
filter=${FILTER:-databus.$source.*.*.*}
out=${OUT:-events.jsonl}
batch=${BATCH:-100}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
IFS=. read -ra tokens <<<"$filter"
if [ "${#tokens[@]}" -ne 5 ] || [ "${filter#"databus.$source."}" = "$filter" ]; then
  echo "$0: FILTER $filter: want five tokens, databus.$source.<db>.<table>.<op> with wildcards" >&2
  exit 2
fi
for tool in nats jq; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found in PATH (scripts/ensure-examples.sh installs it)" >&2; exit 1; }
done

# check_removed FROM fails when the stream no longer holds the events from
# sequence FROM on (docs/events.md, "Gaps").
check_removed() {
  local first
  first=$(nats stream info "$stream" --json | jq .state.first_seq)
  if ((first > $1)); then
    echo "$0: events lost: stream $stream no longer holds sequences $1 to $((first - 1)), which this consumer had not read; start again from a snapshot" >&2
    exit 1
  fi
}

# The output is the position: its last line holds the stream sequence of
# the last event written. A line cut short by a crash is removed.
touch "$out"
if [ -n "$(tail -c1 "$out")" ]; then
  truncate -s $(($(wc -c <"$out") - $(tail -n1 "$out" | wc -c))) "$out"
fi
last=0
if [ -s "$out" ]; then
  last=$(tail -n1 "$out" | jq .seq)
  check_removed $((last + 1))
fi

# first_kept prints the stream sequence before the first message it keeps.
first_kept() {
  nats stream info "$stream" --json | jq '[.state.first_seq - 1, 0] | max'
}

# prepare makes the durable consumer deliver what follows the last message
# received ($seen) or, when that cannot be, the output's last event
# ($last). `nats consumer next` acknowledges each message as it prints it,
# before this script has written it, so the output, not the server's
# acknowledgement floor, says where to go on: when the consumer has
# delivered more than this script received (a run killed in the middle of
# a batch, deliveries lost on the way: $lost) or is missing, it is created
# again right after $last. (A client that acknowledges after writing
# creates it again at its acknowledgement floor + 1 instead.) Run before
# every batch; $delivered is the consumer's delivery sequence.
prepare() {
  local info
  info=$(nats consumer info "$stream" "$durable" --json --no-select 2>/dev/null) || info=""
  if ((!lost)) && [ -n "$info" ] && [ "$(jq --argjson seen "$seen" --arg filter "$filter" \
    '.delivered.stream_seq <= $seen and .num_ack_pending == 0 and .config.filter_subject == $filter' <<<"$info")" = true ]; then
    delivered=$(jq .delivered.consumer_seq <<<"$info")
    return
  fi
  nats consumer rm --force "$stream" "$durable" >/dev/null 2>&1 || true
  nats consumer add "$stream" "$durable" --pull --ack all --deliver $((last + 1)) --filter "$filter" \
    --max-pending 10000 --wait 30s --defaults >/dev/null
  seen=$last
  if ((last == 0)); then
    seen=$(first_kept)
  fi
  joined=0 delivered=0 lost=0
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 0' INT TERM
seen=$last # stream sequence of the last message received
if ((last == 0)); then
  seen=$(first_kept)
fi
joined=0 # chunks of the event being joined in $tmp/event
lost=0
while :; do
  prepare
  # Up to $batch messages; fewer when no more come within a second (the
  # command then fails). Each message is printed as
  #   [time] subj: S / tries: N / cons seq: DELIVERY / str seq: SEQ / pending: N
  #   Headers: ... Data: and the body on one line.
  nats consumer next "$stream" "$durable" --count "$batch" --timeout 1s >"$tmp/batch" 2>/dev/null || true
  # One line per message, "SEQ DELIVERY CHUNK" (CHUNK is i/n or -), its
  # body in $tmp/SEQ without the newline.
  LC_ALL=C awk -v dir="$tmp" '
    /^\[[0-9:]+\] subj: .* \/ cons seq: [0-9]+ \/ str seq: [0-9]+ \// {
      split($0, a, " / cons seq: "); cons = a[2] + 0; split($0, a, " / str seq: "); seq = a[2] + 0; chunk = "-"; data = 0; next
    }
    seq && /^  Databus-Chunk: / { chunk = $2; next }
    seq && /^Data:$/ { data = 1; next }
    seq && data && data < 3 { data++; next }
    seq && data == 3 { f = dir "/" seq; printf "%s", $0 > f; close(f); print seq, cons, chunk; seq = 0 }
  ' "$tmp/batch" >"$tmp/index"
  while read -r seq cons chunk; do
    body=$tmp/$seq
    if ((cons != delivered + 1)); then
      lost=1 # deliveries that never arrived
      break
    fi
    delivered=$cons
    if ((seq <= seen)); then
      continue # delivered again
    fi
    if ((seq > seen + 1)); then
      check_removed $((seen + 1)) # a filter or a leader message skips sequences too
    fi
    seen=$seq
    if [ "$chunk" != - ]; then
      # An event larger than one message: join chunks 1 to n, starting
      # again at every 1/n.
      i=${chunk%/*} n=${chunk#*/}
      if ((i == 1)); then
        : >"$tmp/event"
        joined=0
      fi
      if ((i != joined + 1)); then
        continue # the rest of an event whose start came before this consumer's
      fi
      cat "$body" >>"$tmp/event"
      joined=$i
      if ((i < n)); then
        continue
      fi
      body=$tmp/event
      joined=0
    fi
    { printf '{"seq":%d,"event":' "$seq"; cat "$body"; printf '}\n'; } >>"$out"
    last=$seq
  done <"$tmp/index"
  rm -f "$tmp"/[0-9]*
  sync "$out"
done
