#!/usr/bin/env bash
# Where the nodes' CPU goes, by thread: one sphr-pte rate-mode run on a fresh 4-org testnet,
# then the CPU time each kind of thread used per committed transaction, over all four nodes.
#
#   testnet/cpu-split.sh                  # 1400 tx/s for 15 s
#   testnet/cpu-split.sh 1000 30          # 1000 tx/s for 30 s
#   BLOCK_TIMEOUT_MS=150 BLOCK_MAX_TX=1000 testnet/cpu-split.sh   # other block settings (up.sh)
#
# Threads are grouped by name with the trailing number dropped: tokio-rt-worker (API, gateway,
# endorser, p2p), sphr-raft (Raft), sphr-apply (block validation and commit), sled-io (sled's
# writer pool), futures-timer (libp2p's timers). Groups under 5 us per tx are left out; TOTAL counts all.
# The testnet lives in SPHR_TESTNET_DIR (default testnet/run-split; the report stays there as
# split.json) and is stopped at the end.
# Needs jq. CPU times come from /proc/<pid>/task/<tid>/stat (USER_HZ 100): runs of 15 s and
# more give about 10 us per tx of resolution at 1400 tx/s; alternate A/B runs, the machine's
# own noise is larger than that.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export SPHR_TESTNET_DIR="${SPHR_TESTNET_DIR:-$root/testnet/run-split}"
export SPHR_OPS_LISTEN="${SPHR_OPS_LISTEN:-127.0.0.1:0}"
run="$SPHR_TESTNET_DIR"
rate="${1:-1400}"
secs="${2:-15}"
case "$rate$secs" in *[!0-9]*|"") echo "usage: testnet/cpu-split.sh [RATE] [SECONDS]" >&2; exit 2 ;; esac
command -v jq >/dev/null || { echo "testnet/cpu-split.sh needs jq" >&2; exit 1; }

up_log="$(mktemp)"
trap '"$root/testnet/down.sh" >/dev/null 2>&1 || true; rm -f "$up_log"' EXIT
(cd "$root" && cargo build --release --locked -p sphr-bench --bin sphr-pte)
"$root/testnet/up.sh" 4 >"$up_log" 2>&1 || { tail -n 20 "$up_log" >&2; exit 1; }

# "name ticks" per thread group, summed over the nodes.
snapshot() {
  local pid t
  while read -r pid _; do
    for t in /proc/"$pid"/task/*; do
      printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)"
    done
  done <"$run/pids" | awk '{ n = $1; sub(/-?[0-9]+$/, "", n); s[n] += $2 } END { for (k in s) print k, s[k] }' | sort
}

before="$(snapshot)"
"$root/target/release/sphr-pte" --network "$run/network" --proc-per-org 1 --mode rate \
  --rate "$rate" --run-dur "$secs" --no-progress --json-out "$run/split.json" >/dev/null
after="$(snapshot)"
n="$(jq .received "$run/split.json")"
[ "$n" -gt 0 ] || { echo "no transaction committed" >&2; exit 1; }
echo "rate $rate tx/s for $secs s: $(jq -c '{tps: (.tps | floor), failures, p50: .event_latency_ms.p50, p99: .event_latency_ms.p99}' "$run/split.json")"
join -a2 -e0 -o 0,1.2,2.2 <(echo "$before") <(echo "$after") | awk -v n="$n" '
  { d = $3 - $2; total += d; us = d * 10000 / n; if (us >= 5) printf "  %-18s %6d us/tx\n", $1, us }
  END { printf "  %-18s %6d us/tx\n", "TOTAL", total * 10000 / n }'
