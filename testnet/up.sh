#!/usr/bin/env bash
# Start a local sphr network on loopback: N orgs, one node each, all Raft consenters.
#
#   testnet/up.sh [N]      N = 1..6, default 4: the four orgs of the thesis (genesis/four-orgs.toml)
#   BLOCK_MAX_TX=500 testnet/up.sh 4     the same with blocks of at most 500 transactions
#   BLOCK_TIMEOUT_MS=50 testnet/up.sh 4   ... cut 50 ms after a block's first tx (default 20)
#   ENDORSE_BATCH_INTERVAL_MS=0 testnet/up.sh 4   ... nodes' [p2p] endorse_batch_interval_ms
#                                                 (default: the node's own, 20)
#   ENDORSE_BATCH_INTERVAL_MAX_MS=100 testnet/up.sh 4  ... [p2p] endorse_batch_interval_max_ms
#                                                 (default: the node's own, 20)
#   NODE_WORKER_THREADS=2 testnet/up.sh 4   ... [node] worker_threads (default: this machine's
#                                                 CPUs divided by N, at least 1: the nodes share
#                                                 the machine; 0 = one per CPU in every node)
#   SPHR_NODE_BIN=/tmp/sphr-node.old testnet/up.sh 4   run that build of sphr-node (A/B runs);
#                                                 nothing is built
#
# Builds sphr-node once (release), makes genesis and identities in the run dir
# (SPHR_TESTNET_DIR, default testnet/run), starts N `sphr-node run` processes, each with its own
# ports and data dir, waits until all are healthy and connected, and prints the endpoints.
# testnet/down.sh stops them; testnet/status.sh shows one line per node.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-4}"
run="${SPHR_TESTNET_DIR:-$root/testnet/run}"
case "$n" in [1-6]) ;; *) echo "usage: testnet/up.sh [N], N from 1 to 6" >&2; exit 2 ;; esac

if [ -f "$run/pids" ]; then
  while read -r pid _; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "a testnet is already running from $run (pid $pid): run testnet/down.sh first" >&2
      exit 1
    fi
  done <"$run/pids"
fi

if [ -n "${SPHR_NODE_BIN:-}" ]; then
  # Another build of the node (an A/B comparison, say): used as it is, nothing is built.
  bin="$SPHR_NODE_BIN"
  [ -x "$bin" ] || { echo "SPHR_NODE_BIN=$bin is not an executable file" >&2; exit 2; }
else
  echo "== building sphr-node (release)"
  (cd "$root" && cargo build --release --locked -p sphr-node)
  bin="$root/target/release/sphr-node"
fi

rm -rf "$run"
mkdir -p "$run"
max_tx="${BLOCK_MAX_TX:-}"
case "$max_tx" in ""|[1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]|10000) ;;
  *) echo "BLOCK_MAX_TX must be a number from 1 to 10000, not '$max_tx'" >&2; exit 2 ;; esac
timeout_ms="${BLOCK_TIMEOUT_MS:-}"
case "$timeout_ms" in ""|[1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]) ;;
  *) echo "BLOCK_TIMEOUT_MS must be a number from 1 to 9999, not '$timeout_ms'" >&2; exit 2 ;; esac
interval_ms="${ENDORSE_BATCH_INTERVAL_MS:-}"
case "$interval_ms" in ""|[0-9]|[1-9][0-9]|[1-9][0-9][0-9]|1000) ;;
  *) echo "ENDORSE_BATCH_INTERVAL_MS must be a number from 0 to 1000, not '$interval_ms'" >&2; exit 2 ;; esac
workers="${NODE_WORKER_THREADS:-$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))}"
case "$workers" in [0-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;;
  *) echo "NODE_WORKER_THREADS must be a number from 0 to 999, not '$workers'" >&2; exit 2 ;; esac
interval_max_ms="${ENDORSE_BATCH_INTERVAL_MAX_MS:-}"
case "$interval_max_ms" in ""|[0-9]|[1-9][0-9]|[1-9][0-9][0-9]|1000) ;;
  *) echo "ENDORSE_BATCH_INTERVAL_MAX_MS must be a number from 0 to 1000, not '$interval_max_ms'" >&2; exit 2 ;; esac
if [ "$n" = 4 ]; then
  cp "$root/genesis/four-orgs.toml" "$run/spec.toml"
  if [ -n "$max_tx" ]; then
    sed -i "s/^max_tx = .*/max_tx = $max_tx/" "$run/spec.toml"
  fi
  if [ -n "$timeout_ms" ]; then
    sed -i "s/^batch_timeout_ms = .*/batch_timeout_ms = $timeout_ms/" "$run/spec.toml"
  fi
else
  orgs=(PatientOrg HospitalOrg InsuranceOrg PharmacyOrg LabOrg ResearchOrg)
  {
    echo "# Made by testnet/up.sh $n: $n orgs, one consenter node each, kv endorsed by all."
    echo 'network = "testnet"'
    for i in $(seq 0 $((n - 1))); do
      echo "[[orgs]]"
      echo "name = \"${orgs[$i]}\""
      echo "[[orgs.nodes]]"
      echo "name = \"peer0\""
      echo "api_port = $((7443 + i))"
      echo "p2p_port = $((7000 + i))"
      echo "ops_port = $((9443 + i))"
      echo "[[orgs.users]]"
      echo "name = \"loadgen\""
      echo "role = \"client\""
      echo "pre_key = false"
    done
    echo "[[contracts]]"
    echo 'name = "kv"'
    echo 'policy = "ALL"'
    if [ -n "$max_tx$timeout_ms" ]; then
      echo "[block]"
      [ -z "$max_tx" ] || echo "max_tx = $max_tx"
      [ -z "$timeout_ms" ] || echo "batch_timeout_ms = $timeout_ms"
    fi
  } >"$run/spec.toml"
fi

echo "== genesis ($n orgs) in $run/network"
"$bin" genesis --spec "$run/spec.toml" --out "$run/network" >/dev/null
mapfile -t nodes < <("$bin" network list --network "$run/network")

: >"$run/pids"
for line in "${nodes[@]}"; do
  read -r id api _ <<<"$line"
  org="${id#*@}"
  "$bin" config init --network "$run/network" --node "$id" --data-dir "$run/$org/data" \
    --out "$run/$org.toml" >/dev/null
  if [ "$workers" != 0 ]; then
    sed -i "/^\[node\]$/a worker_threads = $workers" "$run/$org.toml"
  fi
  if [ -n "$interval_ms" ]; then
    sed -i "/^\[p2p\]$/a endorse_batch_interval_ms = $interval_ms" "$run/$org.toml"
  fi
  if [ -n "$interval_max_ms" ]; then
    sed -i "/^\[p2p\]$/a endorse_batch_interval_max_ms = $interval_max_ms" "$run/$org.toml"
  fi
  "$bin" run --config "$run/$org.toml" >"$run/$org.out" 2>"$run/$org.log" &
  echo "$! $id $api" >>"$run/pids"
done

echo "== waiting for $n healthy nodes"
want_peers=$((n - 1))
for _ in $(seq 1 300); do
  ready=0
  while read -r pid id api; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "node $id (pid $pid) exited; its log ($run/${id#*@}.log):" >&2
      tail -n 20 "$run/${id#*@}.log" >&2
      "$root/testnet/down.sh" >/dev/null 2>&1 || true
      exit 1
    fi
    line="$("$bin" status --network "$run/network" --node "$id" 2>/dev/null || true)"
    case "$line" in
      *"leader=-"*|"") ;;
      *"peers=$want_peers "*) ready=$((ready + 1)) ;;
    esac
  done <"$run/pids"
  [ "$ready" = "$n" ] && break
  sleep 0.2
done
if [ "$ready" != "$n" ]; then
  echo "only $ready of $n nodes became healthy within 60 s; logs are in $run" >&2
  exit 1
fi

echo "== testnet up: $n nodes"
while read -r pid id api; do
  ops="$(sed -n 's/^sphr-node operations //p' "$run/${id#*@}.out" | head -n 1)"
  echo "  $id  https://$api  ops ${ops:--}  (pid $pid, log $run/${id#*@}.log)"
done <"$run/pids"
echo "client: $bin invoke --network $run/network --node <name@org> kv put key value"
echo "metrics: prometheus --config.file=configs/prometheus/prometheus.yml (scrapes the ops ports)"
