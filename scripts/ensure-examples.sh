#!/usr/bin/env bash
# Installs what the consumers of examples/ need, and their test
# (cmd/databus/examples_test.go), when it is missing: node and npm and jq
# (apt, Debian/Ubuntu), the Node example's packages (npm ci, from its
# package-lock.json), and the nats CLI v0.5.1 (go install, into
# $(go env GOPATH)/bin). Does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt-lib.sh

want=()
command -v node >/dev/null 2>&1 || want+=(nodejs npm)
command -v jq >/dev/null 2>&1 || want+=(jq)
if [ ${#want[@]} -gt 0 ]; then
  apt_install "install Node.js 18 or newer with npm, and jq, by hand" "${want[@]}"
fi

# npm records what it installed in node_modules/.package-lock.json.
node_dir=examples/node
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  echo "installing the Node example's packages (npm ci)..." >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! command -v nats >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/nats" ]; then
  echo "installing the nats CLI v0.5.1 (go install)..." >&2
  go install github.com/nats-io/natscli/nats@v0.5.1
fi
