#!/usr/bin/env bash
# A demo workload against the running testnet: every org's gateway submits transactions that
# every org endorses (policy ALL in genesis), a read-modify-write, queries on every node, and
# a burst of concurrent invokes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="${SPHR_TESTNET_DIR:-$root/testnet/run}"
bin="$root/target/release/sphr-node"
[ -f "$run/pids" ] || { echo "no testnet is running from $run: testnet/up.sh first" >&2; exit 1; }
mapfile -t ids < <(awk '{print $2}' "$run/pids")
cli() { "$bin" "$1" --network "$run/network" "${@:2}"; }

echo "== each org's node takes a transaction; every org endorses it"
i=0
for id in "${ids[@]}"; do
  i=$((i + 1))
  cli invoke --node "$id" --user "loadgen@${id#*@}" kv put "ward-$i/beds" "$((10 * i))"
done
echo
echo "== a read-modify-write through the first node"
cli invoke --node "${ids[0]}" --user "loadgen@${ids[0]#*@}" kv transfer ward-1/beds ward-2/beds 4
echo
echo "== every node answers from its own copy of the state"
for id in "${ids[@]}"; do
  printf '%s: ward-1/beds=' "$id"
  cli query --node "$id" --user "loadgen@${id#*@}" kv get ward-1/beds
done
echo
echo "== 80 concurrent invokes spread over the nodes"
pids=()
for k in $(seq 1 80); do
  id="${ids[$((k % ${#ids[@]}))]}"
  cli invoke --node "$id" --user "loadgen@${id#*@}" kv put "sensor-$k" "$k" >/dev/null &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=$((fail + 1)); done
echo "80 invokes, $fail failed"
[ "$fail" = 0 ]
