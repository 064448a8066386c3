#!/usr/bin/env bash
# Shared by the demo scripts (sourced): free ports and a throwaway MariaDB
# under $ROOT/mysql, stopped with the other processes in $pids on exit.

free_port() { # first port from $1 on that nobody listens on
  local p=$1
  while (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# start_mariadb: a MariaDB with binlog ROW/FULL on a free port from 33306,
# a `databus` user with the privileges capture needs and database shop with
# table orders. Sets MYSQL_PORT, SOCK and CLIENT.
start_mariadb() {
  MYSQL_PORT=$(free_port 33306)
  SOCK="$ROOT/mysql.sock"
  local mariadbd install_db
  mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  install_db=$(command -v mariadb-install-db || echo /usr/bin/mariadb-install-db)
  CLIENT=$(command -v mariadb || command -v mysql)
  echo "== starting a throwaway MariaDB on 127.0.0.1:$MYSQL_PORT (binlog ROW, FULL image and metadata)"
  "$install_db" --no-defaults --datadir="$ROOT/mysql" --auth-root-authentication-method=normal --skip-test-db --user="$(id -un)" >"$ROOT/install.log" 2>&1
  "$mariadbd" --no-defaults --datadir="$ROOT/mysql" --socket="$SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --user="$(id -un)" --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --server-id=1 --log-error="$ROOT/mysql.err" --skip-name-resolve --innodb-buffer-pool-size=32M &
  pids+=($!)
  for _ in $(seq 1 100); do "$CLIENT" -S "$SOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
  "$CLIENT" -S "$SOCK" -uroot -e "CREATE USER IF NOT EXISTS 'databus'@'127.0.0.1' IDENTIFIED BY 'demo';
    GRANT SELECT, RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'databus'@'127.0.0.1';
    CREATE DATABASE shop; CREATE TABLE shop.orders (id BIGINT UNSIGNED PRIMARY KEY, customer VARCHAR(64),
    total DECIMAL(12,2), placed DATETIME(3)) DEFAULT CHARSET=utf8mb4;"
}
