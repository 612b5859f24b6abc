#!/usr/bin/env bash
# Stop what testnet/up.sh started, by PID: SIGTERM (finish the block in hand, flush, exit 0),
# then SIGKILL for any node still running after 30 s. Keeps the run dir (logs, data).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="${SPHR_TESTNET_DIR:-$root/testnet/run}"
[ -f "$run/pids" ] || { echo "no testnet is running from $run"; exit 0; }
while read -r pid id _; do
  if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
done <"$run/pids"
for _ in $(seq 1 150); do
  alive=0
  while read -r pid _; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done <"$run/pids"
  [ "$alive" = 0 ] && break
  sleep 0.2
done
while read -r pid id _; do
  if kill -0 "$pid" 2>/dev/null; then
    echo "node $id did not stop within 30 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done <"$run/pids"
rm -f "$run/pids"
echo "testnet stopped (logs and data kept in $run)"
