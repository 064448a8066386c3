#!/usr/bin/env bash
# Installs MariaDB server binaries when mariadbd is missing (Debian/Ubuntu);
# with --test-suite, also MariaDB's own test suite (package mariadb-test,
# scripts under /usr/share/mysql/mysql-test) for `make ddl-corpus`.
# Tests and the demo start their own throwaway mariadbd; nothing is started
# here.
set -euo pipefail
. "$(dirname "$0")/apt-lib.sh"
want=()
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  want+=(mariadb-server)
fi
if [ "${1:-}" = --test-suite ] && [ ! -d /usr/share/mysql/mysql-test/main ]; then
  want+=(mariadb-test)
fi
if [ ${#want[@]} -eq 0 ]; then
  exit 0
fi
apt_install "install MariaDB server (10.5 or newer) and, for make ddl-corpus, its test suite by hand" "${want[@]}"
# The package may start a system service; the tests do not need it.
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO service mariadb stop >/dev/null 2>&1 || true
