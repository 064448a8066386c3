#!/usr/bin/env bash
# Runs the benchmark harness once and records the table in
# docs/performance.md (between the bench markers). Sizes: BENCH_ROWS (row
# changes in the pre-written binlog, default 300000), BENCH_BIG_TXN_ROWS
# (default 1000000), BENCH_LATENCY_SECONDS (default 5), BENCH_SNAPSHOT_ROWS
# (inserts into the snapshotted tables, default 1050000),
# BENCH_SYSBENCH_SECONDS (each sysbench workload of the apply benchmarks,
# default 20). The apply benchmarks need sysbench (installed when missing).
# BENCH_APPLY_PROFILE and BENCH_LOAD_PROFILE name files for CPU profiles of
# the timed part of BenchmarkApply and BenchmarkSnapshotLoad,
# BENCH_SNAPSHOT_PROFILE of BenchmarkSnapshotInProcess's iterations.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v sysbench >/dev/null; then
  apt-get update -qq && apt-get install -y -qq sysbench
fi
out=$(mktemp)
go test -run '^$' -bench "${BENCH:-.}" -benchtime 1x -timeout 60m ./internal/bench 2>&1 | tee "$out" | grep -E '^(Benchmark|FAIL|ok|PASS)'
table=$(awk '
/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
  line=""
  for (i=5; i<NF; i+=2) { line=line sprintf("%s %s, ", $i, $(i+1)); v[name, $(i+1)]=$i }
  sub(/, $/, "", line)
  printf("| %s | %s |\n", name, line)
}
END {
  lim=v["LimitBinlogDecode","rows/s"]; pub=v["LimitJetStreamPublish","msgs/s"]
  if (pub != "" && (lim == "" || pub+0 < lim+0)) lim=pub
  s=v["Streaming","rows/s"]
  if (lim != "" && s != "") printf("| **streaming / lower limit** | %.0f%% (%.0f rows/s of %.0f) |\n", 100*s/lim, s, lim)
  d=v["SnapshotMariadbDump","rows/s"]
  sn=v["SnapshotRequested","rows/s"]; pd=v["SnapshotRequested","paired-dump-rows/s"]; pr=v["SnapshotRequested","vs-paired-dump"]
  if (sn != "" && pr != "") printf("| **snapshot / mariadb-dump** | %.0f%% (median of back-to-back pairs: %.0f rows/s, the dump right after %.0f) |\n", 100*pr, sn, pd)
  sn=v["SnapshotRequestedExternalNATS","rows/s"]; pd=v["SnapshotRequestedExternalNATS","paired-dump-rows/s"]; pr=v["SnapshotRequestedExternalNATS","vs-paired-dump"]
  if (sn != "" && pr != "") printf("| **snapshot with an external NATS server / mariadb-dump** | %.0f%% (median of back-to-back pairs: %.0f rows/s, the dump right after %.0f) |\n", 100*pr, sn, pd)
  sl=v["SnapshotLocal","rows/s"]
  if (sl != "" && d != "") printf("| **snapshot --local / mariadb-dump** | %.0f%% (%.0f rows/s of %.0f) |\n", 100*sl/d, sl, d)
  si=v["SnapshotInProcess","rows/s"]
  if (si != "" && d != "") printf("| **snapshot.Take in process / mariadb-dump** | %.0f%% (%.0f rows/s of %.0f) |\n", 100*si/d, si, d)
  ap=v["Apply","txns/s"]; an=v["ApplyNative","txns/s"]
  if (ap != "" && an != "") printf("| **apply / native replication** | %.0f%% (%.0f transactions/s of %.0f) |\n", 100*ap/an, ap, an)
  ld=v["SnapshotLoad","rows/s"]; lm=v["SnapshotLoadMariadb","rows/s"]
  if (ld != "" && lm != "") printf("| **snapshot load / mariadb < dump.sql** | %.0f%% (%.0f rows/s of %.0f) |\n", 100*ld/lm, ld, lm)
}' "$out")
{
  echo "<!-- bench:start -->"
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
  echo "BENCH_ROWS=${BENCH_ROWS:-300000}, BENCH_BIG_TXN_ROWS=${BENCH_BIG_TXN_ROWS:-1000000}, BENCH_SNAPSHOT_ROWS=${BENCH_SNAPSHOT_ROWS:-1050000}, BENCH_SYSBENCH_SECONDS=${BENCH_SYSBENCH_SECONDS:-20}, one run of \`make bench\`:"
  echo
  echo "| benchmark | result |"
  echo "| --- | --- |"
  echo "$table"
  echo "<!-- bench:end -->"
} > "$out.md"
doc=docs/performance.md
if [ -f "$doc" ] && grep -q 'bench:start' "$doc"; then
  awk -v f="$out.md" '
    /<!-- bench:start -->/ { while ((getline l < f) > 0) print l; skip=1; next }
    /<!-- bench:end -->/ { skip=0; next }
    !skip { print }' "$doc" > "$doc.new" && mv "$doc.new" "$doc"
else
  cat "$out.md" >> "$doc"
fi
echo "recorded in $doc"
