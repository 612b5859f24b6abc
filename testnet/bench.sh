#!/usr/bin/env bash
# Benchmark the 4-org testnet with sphr-pte, as seed 003 benchmarked its Fabric network with PTE.
#
#   testnet/bench.sh            # seed-003 run, then a ramp to find the sustained rate, then 60 s at it
#   testnet/bench.sh 1500       # seed-003 run, then 60 s at 1500 tx/s (no ramp)
#
# 1. builds sphr-node and sphr-pte (release) and starts the 4-org testnet (testnet/up.sh 4:
#    PatientOrg, HospitalOrg, InsuranceOrg, PharmacyOrg; 4 Raft consenters; kv under ALL) in
#    SPHR_TESTNET_DIR (default testnet/run-bench). Operations ports are chosen by the OS
#    (SPHR_OPS_LISTEN=127.0.0.1:0) so that a node left on 9443 by something else does not
#    stop the testnet.
#    Then waits (at most SETTLE_SECS, default 60) for the 1-minute load average to fall below
#    the number of cores, so that the tail of the builds is not measured as the network.
# 2. the seed-003 configuration (benches/pte/seed-003.toml): 4 orgs x 1 process x 1000 invokes,
#    constant mode, one send every CONST_FREQ ms per process (default 1.95: 2051 tx/s offered;
#    PTE's TPS counts from the first send to the last commit, so 4000 txs sent at exactly
#    2000 tx/s can never show 2000 TPS: 4000 / (2.0 s + the last tx's latency)).
# 3. unless a rate is given: RAMP_SECS-second rate-mode runs at each rate of RAMP; the
#    sustained rate is the highest rate with TPS >= 95 % of it, no failure, no event timeout
#    and p99 <= P99_MAX_MS; the ramp stops at the first rate that fails.
# 4. DURATION seconds (default 60) in rate mode at that rate, with the report per second
#    (--timeline: sends, commits and latency in each second, to tell a stall from a backlog).
#    A 10 s step can pass at a rate that 60 s do not hold; when the run misses the same
#    criterion, it runs once more at the ramp's next lower rate, and both reports are kept.
# Prints every report, keeps the JSON in $SPHR_TESTNET_DIR/bench/, and stops the testnet on
# exit (KEEP=1 leaves it running; REUSE=1 uses a testnet already running from that folder).
#
# Environment: FLOW (gateway|client, default gateway), CONST_FREQ (ms, default 1.95),
# RAMP (rates, default "250 500 750 1000 1250 1500 1750 2050 2250 2500 3000"), RAMP_SECS (default 10),
# DURATION (s, default 60), P99_MAX_MS (default 250), DEFAULT_RATE (used when the ramp
# finds none; default 1000), SETTLE_SECS (default 60; 0 skips the wait).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export SPHR_TESTNET_DIR="${SPHR_TESTNET_DIR:-$root/testnet/run-bench}"
export SPHR_OPS_LISTEN="${SPHR_OPS_LISTEN:-127.0.0.1:0}"
run="$SPHR_TESTNET_DIR"
flow="${FLOW:-gateway}"
const_freq="${CONST_FREQ:-1.95}"
ramp="${RAMP:-250 500 750 1000 1250 1500 1750 2050 2250 2500 3000}"
ramp_secs="${RAMP_SECS:-10}"
duration="${DURATION:-60}"
p99_max="${P99_MAX_MS:-250}"
default_rate="${DEFAULT_RATE:-1000}"
rate="${1:-}"
case "$rate" in ""|[0-9]*) ;; *) echo "usage: testnet/bench.sh [RATE]" >&2; exit 2 ;; esac
settle_max="${SETTLE_SECS:-60}"
case "$settle_max" in [0-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;;
  *) echo "SETTLE_SECS must be a number from 0 to 999, not '$settle_max'" >&2; exit 2 ;; esac
command -v jq >/dev/null || { echo "testnet/bench.sh needs jq" >&2; exit 1; }

cleanup() { if [ "${KEEP:-0}" != 1 ]; then "$root/testnet/down.sh" || true; fi; }
trap cleanup EXIT

echo "== building sphr-pte (release)"
(cd "$root" && cargo build --release --locked -p sphr-bench --bin sphr-pte)
pte="$root/target/release/sphr-pte"

if [ "${REUSE:-0}" = 1 ] && [ -f "$run/pids" ]; then
  echo "== reusing the testnet running from $run (REUSE=1)"
else
  "$root/testnet/up.sh" 4
fi
net="$run/network"
out="$run/bench"
mkdir -p "$out"

waited=0
while [ "$waited" -lt "$settle_max" ] && awk -v c="$(nproc)" '{ exit !($1 >= c) }' /proc/loadavg; do
  sleep 5
  waited=$((waited + 5))
done
echo "== settled for $waited s (load average $(cut -d' ' -f1-3 /proc/loadavg))"

machine() {
  echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# CPU seconds (user + system) used so far by the testnet's nodes, from /proc (USER_HZ 100).
nodes_cpu() {
  local total=0 pid t
  while read -r pid _; do
    t="$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    total=$((total + t))
  done <"$run/pids"
  echo "$total"
}

# Runs sphr-pte with the given flags; prints the PTE report, keeps the JSON in $out/$1.json.
# Also prints the CPU time the nodes and sphr-pte used per committed transaction: with other
# work on the machine, TPS and latency are lower bounds of what it can do alone, but CPU per
# transaction is much less affected, and cores / (CPU per tx) bounds what the machine could do.
# Failed transactions cost CPU too but are not counted, so runs with failures overstate it.
pte_run() {
  local name="$1"
  shift
  machine
  echo "command: sphr-pte --config benches/pte/seed-003.toml --network $net --flow $flow $*"
  local c0 c1
  c0="$(nodes_cpu)"
  "$pte" --config "$root/benches/pte/seed-003.toml" --network "$net" --flow "$flow" \
    --no-progress --json-out "$out/$name.json" "$@"
  c1="$(nodes_cpu)"
  echo "after the run: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  jq -r --argjson ticks "$((c1 - c0))" --argjson cores "$(nproc)" '
    (if .received > 0 then ($ticks * 10000 / .received) else 0 end) as $node_us
    | (if .received > 0 and .client_cpu_s != null then (.client_cpu_s * 1e6 / .received) else 0 end) as $pte_us
    | "CPU per committed tx: nodes \($node_us | round) us (all 4), sphr-pte \($pte_us | round) us; "
      + "\($cores) cores / that = \(if ($node_us + $pte_us) > 0 then ($cores * 1e6 / ($node_us + $pte_us) | round) else "n/a" end) tx/s "
      + "(the CPU-bound ceiling if every tx cost this much; CPU per tx falls as blocks fill)"' \
    "$out/$name.json" | tee "$out/$name.cpu"
}

# 0 if the run at offered rate $2 (report $1) is sustained.
sustained() {
  jq -e --argjson r "$2" --argjson p "$p99_max" \
    '.tps >= 0.95 * $r and .failures == 0 and .event_timeouts == 0 and .event_latency_ms != null and .event_latency_ms.p99 <= $p' \
    "$out/$1.json" >/dev/null
}

echo
echo "== seed-003 configuration: 4 orgs x 1 process x 1000 invokes, constant mode, const-freq $const_freq ms"
pte_run seed003 --const-freq "$const_freq"

if [ -z "$rate" ]; then
  echo
  echo "== ramp: ${ramp_secs} s at each of: $ramp tx/s (sustained: TPS >= 95 % offered, 0 failures, p99 <= $p99_max ms)"
  best=""
  lower=""
  for r in $ramp; do
    pte_run "ramp-$r" --mode rate --rate "$r" --run-dur "$ramp_secs" >"$out/ramp-$r.txt" || true
    tps="$(jq -r '.tps*10|round/10' "$out/ramp-$r.json" 2>/dev/null || echo "?")"
    p99="$(jq -r '.event_latency_ms.p99 // "n/a"' "$out/ramp-$r.json" 2>/dev/null || echo "?")"
    fails="$(jq -r '.failures + .event_timeouts' "$out/ramp-$r.json" 2>/dev/null || echo "?")"
    if sustained "ramp-$r" "$r"; then
      echo "  $r tx/s offered: TPS $tps, p99 $p99 ms, failures $fails: sustained"
      lower="$best"
      best="$r"
    else
      echo "  $r tx/s offered: TPS $tps, p99 $p99 ms, failures $fails: not sustained"
      break
    fi
  done
  rate="${best:-$default_rate}"
  [ -n "$best" ] || echo "  no rate of the ramp was sustained; using DEFAULT_RATE=$default_rate"
fi

echo
echo "== sustained run: ${duration} s at $rate tx/s (rate mode, 4 processes)"
pte_run "sustained-$rate" --mode rate --rate "$rate" --run-dur "$duration" --timeline
if [ -n "${lower:-}" ] && ! sustained "sustained-$rate" "$rate"; then
  echo
  echo "== $rate tx/s did not hold for ${duration} s (TPS >= 95 % offered, 0 failures, p99 <= $p99_max ms);"
  echo "== sustained run again: ${duration} s at $lower tx/s, the ramp's next lower rate"
  pte_run "sustained-$lower" --mode rate --rate "$lower" --run-dur "$duration" --timeline
fi
echo
echo "reports (JSON) in $out"
