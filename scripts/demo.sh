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

free_port() { # first port from $1 on that nobody listens on
  local p=$1
  while (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
MYSQL_PORT=$(free_port 33306)
NATS_PORT=$(free_port 4222)
SOCK="$ROOT/mysql.sock"
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
INSTALL_DB=$(command -v mariadb-install-db || echo /usr/bin/mariadb-install-db)
CLIENT=$(command -v mariadb || command -v mysql)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== starting a throwaway MariaDB on 127.0.0.1:$MYSQL_PORT (binlog ROW, FULL image and metadata)"
"$INSTALL_DB" --no-defaults --datadir="$ROOT/mysql" --auth-root-authentication-method=normal --skip-test-db --user="$(id -un)" >"$ROOT/install.log" 2>&1
"$MARIADBD" --no-defaults --datadir="$ROOT/mysql" --socket="$SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
  --user="$(id -un)" --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
  --server-id=1 --log-error="$ROOT/mysql.err" --skip-name-resolve --innodb-buffer-pool-size=32M &
pids+=($!)
for _ in $(seq 1 100); do "$CLIENT" -S "$SOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
"$CLIENT" -S "$SOCK" -uroot -e "CREATE USER IF NOT EXISTS 'databus'@'127.0.0.1' IDENTIFIED BY 'demo';
  GRANT SELECT, RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'databus'@'127.0.0.1';
  CREATE DATABASE shop; CREATE TABLE shop.orders (id BIGINT UNSIGNED PRIMARY KEY, customer VARCHAR(64),
  total DECIMAL(12,2), placed DATETIME(3)) DEFAULT CHARSET=utf8mb4;"

export DATABUS_MYSQL_ADDR="127.0.0.1:$MYSQL_PORT" DATABUS_MYSQL_USER=databus DATABUS_MYSQL_PASSWORD=demo
export DATABUS_NATS_LISTEN="127.0.0.1:$NATS_PORT" DATABUS_DATA_DIR="$ROOT/databus" DATABUS_SOURCE=demo

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
echo "== done: events are in stream DATABUS_demo on nats://127.0.0.1:$NATS_PORT"
