#!/usr/bin/env bash
# Installs MariaDB's own test suite (the mariadb-test package, scripts under
# /usr/share/mysql/mysql-test) for `make ddl-corpus` when it is missing.
set -euo pipefail
scripts/ensure-mariadb.sh
if [ -d /usr/share/mysql/mysql-test/main ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "MariaDB's test suite not found and apt-get unavailable: install the mariadb-test package by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "installing mariadb-test (MariaDB's test suite)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-test >/dev/null
$SUDO service mariadb stop >/dev/null 2>&1 || true
