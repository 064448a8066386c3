#!/usr/bin/env bash
# databus HA demo: a throwaway MariaDB, three `databus run` nodes on
# localhost whose embedded NATS servers form one JetStream cluster (stream,
# state bucket and snapshots replicated three times), a write load, and
# `databus tail` connected to the cluster. It kills -9 the node that leads
# capture, shows a standby taking over, restarts the node and checks that
# the tail saw every row once, in order. Everything lives under
# ./demo-ha-data and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD/demo-ha-data"
BIN="$PWD/bin/databus"
rm -rf "$ROOT"
mkdir -p "$ROOT"

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh
start_mariadb

export DATABUS_MYSQL_ADDR="127.0.0.1:$MYSQL_PORT" DATABUS_MYSQL_USER=databus DATABUS_MYSQL_PASSWORD=demo
export DATABUS_SOURCE=demo DATABUS_NATS_STREAM_REPLICAS=3 DATABUS_SNAPSHOT_ON_START=false
export DATABUS_NATS_CLUSTER_USER=route DATABUS_NATS_CLUSTER_PASSWORD=demo-route-secret
declare -a client_port cluster_port http_port node_pid
routes=()
for i in 1 2 3; do
  client_port[$i]=$(free_port $((4221 + i * 10)))
  cluster_port[$i]=$(free_port $((6221 + i * 10)))
  http_port[$i]=$(free_port $((9640 + i * 10)))
  routes+=("nats-route://127.0.0.1:${cluster_port[$i]}")
done
ROUTES=$(IFS=,; echo "${routes[*]}")
URLS="nats://127.0.0.1:${client_port[1]},nats://127.0.0.1:${client_port[2]},nats://127.0.0.1:${client_port[3]}"

start_node() { # start_node N: databus run as node N, log in $ROOT/nodeN.log
  local i=$1
  DATABUS_NATS_SERVER_NAME="node$i" DATABUS_DATA_DIR="$ROOT/node$i" \
    DATABUS_NATS_LISTEN="127.0.0.1:${client_port[$i]}" DATABUS_NATS_CLUSTER_LISTEN="127.0.0.1:${cluster_port[$i]}" \
    DATABUS_HTTP_LISTEN="127.0.0.1:${http_port[$i]}" DATABUS_NATS_CLUSTER_ROUTES="$ROUTES" "$BIN" run >>"$ROOT/node$i.log" 2>&1 &
  node_pid[$i]=$!
  pids+=($!)
}
status() { DATABUS_NATS_URL="$URLS" "$BIN" status 2>/dev/null; }
leader() { status | sed -n 's/^    "leader": "\(node[0-9]\)",$/\1/p' | head -1; }
rows() { "$CLIENT" -S "$SOCK" -uroot -N -e "SELECT COUNT(*) FROM shop.orders"; }

echo "== three databus run nodes, cluster routes $ROUTES (logs in $ROOT/node{1,2,3}.log)"
for i in 1 2 3; do start_node "$i"; done
for _ in $(seq 1 300); do [ -n "$(leader)" ] && break; sleep 0.2; done
L=$(leader)
[ -n "$L" ] || { echo "no node leads capture after 60s; see $ROOT/node*.log"; exit 1; }
echo "== $L leads capture; the others stand by"
status | sed -n '/"capture"/,/^  }/p'

echo "== writing one order every 50 ms; databus tail follows the cluster (given all three URLs)"
DATABUS_NATS_URL="$URLS" "$BIN" tail --from now --table shop.orders >"$ROOT/tail.jsonl" 2>"$ROOT/tail.log" &
pids+=($!)
sleep 2
( n=0; while :; do n=$((n + 1)); "$CLIENT" -S "$SOCK" -uroot -e "INSERT INTO shop.orders VALUES ($n, 'c$n', $n.00, NOW(3))" || exit; sleep 0.05; done ) &
writer=$!
pids+=($writer)
sleep 5

i=${L#node}
echo "== kill -9 $L (its NATS server and its capture) after $(rows) orders"
killed=$(date +%s%N)
{ kill -9 "${node_pid[$i]}" && wait "${node_pid[$i]}"; } 2>/dev/null || true
for _ in $(seq 1 300); do n=$(leader); [ -n "$n" ] && [ "$n" != "$L" ] && break; sleep 0.1; done
N=$(leader)
# When the new leader says it leads, from its log.
took=$(sed -n 's/^time=\([^ ]*\) level=INFO msg="leading: this node captures".*/\1/p' "$ROOT/$N.log" | tail -1)
ms=$((($(date -d "$took" +%s%N) - killed) / 1000000))
echo "== $N leads capture, ${ms} ms after the kill (capture.lease: 3s)"
sleep 5
echo "== restarting $L: it rejoins the cluster as a standby"
start_node "$i"
sleep 5
kill "$writer"
wait "$writer" 2>/dev/null || true
want=$(rows)
for _ in $(seq 1 100); do [ "$(wc -l <"$ROOT/tail.jsonl")" -ge "$want" ] && break; sleep 0.2; done
got=$(wc -l <"$ROOT/tail.jsonl")
distinct=$(grep -o '"id":"[0-9]*"' "$ROOT/tail.jsonl" | sort -u | wc -l)
status | sed -n '/"capture"/,/^  }/p'
echo "== the source has $want orders; tail printed $got events for $distinct distinct orders"
[ "$got" -eq "$want" ] && [ "$distinct" -eq "$want" ] || { echo "MISMATCH: see $ROOT"; exit 1; }
echo "== done: nothing lost, nothing twice across the failover"
