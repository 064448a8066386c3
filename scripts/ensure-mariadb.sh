#!/usr/bin/env bash
# Installs MariaDB server binaries when mariadbd is missing (Debian/Ubuntu).
# Tests and the demo start their own throwaway mariadbd; nothing is started
# here.
set -euo pipefail
if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "mariadbd not found and apt-get unavailable: install MariaDB server (10.5 or newer) by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "installing mariadb-server (mariadbd not found)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server >/dev/null
# The package may start a system service; the tests do not need it.
$SUDO service mariadb stop >/dev/null 2>&1 || true
