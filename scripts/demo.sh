#!/usr/bin/env bash
# databus demo: a throwaway MariaDB, `databus run` with embedded NATS, a
# small write load, and `databus tail` printing the events as JSON lines.
# Everything lives under ./demo-data and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD/demo-data"
BIN="$PWD/bin/databus"
rm -rf "$ROOT"
mkdir -p "$ROOT"

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh
NATS_PORT=$(free_port 4222)
HTTP_PORT=$(free_port 9650)
start_mariadb

export DATABUS_MYSQL_ADDR="127.0.0.1:$MYSQL_PORT" DATABUS_MYSQL_USER=databus DATABUS_MYSQL_PASSWORD=demo
export DATABUS_NATS_LISTEN="127.0.0.1:$NATS_PORT" DATABUS_DATA_DIR="$ROOT/databus" DATABUS_SOURCE=demo
export DATABUS_HTTP_LISTEN="127.0.0.1:$HTTP_PORT"

echo "== databus check"
"$BIN" check

echo "== databus run (embedded NATS on 127.0.0.1:$NATS_PORT, data in $ROOT/databus; log in $ROOT/databus.log)"
"$BIN" run >"$ROOT/databus.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do "$BIN" status 2>/dev/null | grep -q checkpoint && break; sleep 0.2; done

echo "== writing: one multi-row INSERT, one transaction with UPDATE and DELETE"
"$CLIENT" -S "$SOCK" -uroot --default-character-set=utf8mb4 -e "
  INSERT INTO shop.orders VALUES (1, 'Ann', 19.99, NOW(3)), (2, 'Bob 😀', 5.00, NOW(3)), (18446744073709551615, 'Max', 0.01, NOW(3));
  BEGIN; UPDATE shop.orders SET total = total * 2 WHERE id = 1; DELETE FROM shop.orders WHERE id = 2; COMMIT;"

echo "== databus tail --from beginning (5 events)"
timeout 30 "$BIN" tail --from beginning --count 5
if command -v curl >/dev/null; then
  echo "== metrics: curl http://127.0.0.1:$HTTP_PORT/metrics (readyz: $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz"))"
  sleep 2 # lag and bytes behind are measured every 2s
  curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^databus_(capture_(events_total|transactions_total|lag_seconds|binlog_behind_bytes|up)|stream_messages)'
fi
echo "== done: events are in stream DATABUS_demo on nats://127.0.0.1:$NATS_PORT"
