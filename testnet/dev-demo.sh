#!/usr/bin/env bash
# The one-node demo: build sphr-node, start a one-org dev network in a temporary folder,
# run a demo workload against it over HTTPS, print what happened, and stop the node.
#
#   testnet/dev-demo.sh        # keeps nothing; set KEEP=1 to keep the folder
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

echo "== building sphr-node (release; the first build takes a few minutes)"
cargo build --release --locked -p sphr-node
bin="$root/target/release/sphr-node"

work="$(mktemp -d "${TMPDIR:-/tmp}/sphr-demo.XXXXXX")"
node_pid=""
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== starting a dev node in $work (one org, one Raft consenter, sled on disk)"
# Listen on a free port chosen by the OS; the node prints where it serves.
SPHR_API_LISTEN=127.0.0.1:0 "$bin" dev --dir "$work" >"$work/node.out" 2>"$work/node.log" &
node_pid=$!
addr=""
for _ in $(seq 1 300); do
  addr="$(sed -n 's/^sphr-node serving https:\/\/\([^ ]*\).*/\1/p' "$work/node.out" | head -n1)"
  [ -n "$addr" ] && break
  if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "the node exited; its log:"; cat "$work/node.log"; exit 1
  fi
  sleep 0.1
done
[ -n "$addr" ] || { echo "the node did not start within 30 s"; cat "$work/node.log"; exit 1; }
echo "node serving https://$addr"

cli() { "$bin" "$1" --network "$work/network" --node "https://$addr" "${@:2}"; }

echo
echo "== invoke: alice (client) puts two ward bed counts; each waits for its commit"
cli invoke kv put ward-7/beds 12
cli invoke kv put ward-9/beds 4
echo
echo "== invoke: bob (doctor) moves 3 beds from ward 7 to ward 9 (a read-modify-write)"
cli invoke --user bob kv transfer ward-7/beds ward-9/beds 3
echo
echo "== query (evaluated on committed state, not ordered)"
printf 'ward-7/beds = '; cli query kv get ward-7/beds
printf 'ward-9/beds = '; cli query kv get ward-9/beds
echo
echo "== a refused call changes nothing: moving 100 beds out of ward 7"
if cli invoke kv transfer ward-7/beds ward-9/beds 100; then
  echo "unexpected: the overdraft was accepted"; exit 1
fi
printf 'ward-7/beds = '; cli query kv get ward-7/beds
echo
echo "== 40 concurrent invokes (several per block)"
for i in $(seq 1 40); do cli invoke kv put "sensor-$i" "$i" >/dev/null & done
wait $(jobs -p | grep -v "^$node_pid\$") 2>/dev/null || true
echo
echo "== status"
cli status
height="$(cli status --json | sed -n 's/.*"height": \([0-9]*\).*/\1/p')"
echo
echo "== the last block (no arguments or values are shown: only names, orgs and codes)"
cli block "$height"
echo
echo "== stopping the node (SIGTERM: finish the block in hand, flush, exit 0)"
kill -TERM "$node_pid"
wait "$node_pid"
echo "node exited with status $?"
node_pid=""
echo
echo "demo done: $height blocks committed"
