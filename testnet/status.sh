#!/usr/bin/env bash
# One line per node of the running testnet:
#   org=<org> node=<name> height=<h> tip=<hash> leader=<node> peers=<n> term=<t>
# Exits 1 if a node does not answer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="${SPHR_TESTNET_DIR:-$root/testnet/run}"
bin="$root/target/release/sphr-node"
[ -f "$run/pids" ] || { echo "no testnet is running from $run" >&2; exit 1; }
rc=0
while read -r pid id _; do
  if ! "$bin" status --network "$run/network" --node "$id"; then
    echo "org=${id#*@} node=${id%@*} DOWN (pid $pid)"
    rc=1
  fi
done <"$run/pids"
exit $rc
