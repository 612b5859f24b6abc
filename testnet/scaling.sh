#!/usr/bin/env bash
# Scaling table for BENCHMARKS.md: TPS and event p99 of the local testnet for 1, 3, 4 and 5 orgs
# (blocks of at most 100 transactions) and, with 4 orgs, for blocks of at most 10, 100 and 500.
#
#   testnet/scaling.sh              # every configuration, about 30 s each
#   ORGS="1 4" BLOCKS="" testnet/scaling.sh
#
# Each configuration: a fresh testnet (testnet/up.sh N, BLOCK_MAX_TX for the block size; every
# org endorses every kv tx), a warm-up of WARMUP seconds, then RUN_SECS seconds of closed-loop
# load (sphr-pte --mode inflight, 2 processes per org, INFLIGHT_TOTAL transactions outstanding in
# all, kv put of a random key with a 100-byte value, gateway flow), then the testnet stops.
# Prints one markdown row per configuration; the JSON reports stay in $SPHR_TESTNET_DIR/scaling/.
#
# Environment: ORGS (default "1 3 4 5"), BLOCKS (default "10 100 500"), RUN_SECS (default 10),
# WARMUP (default 3), INFLIGHT_TOTAL (default 256).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export SPHR_TESTNET_DIR="${SPHR_TESTNET_DIR:-$root/testnet/run-scaling}"
export SPHR_OPS_LISTEN="${SPHR_OPS_LISTEN:-127.0.0.1:0}"
orgs_list="${ORGS-1 3 4 5}"
blocks_list="${BLOCKS-10 100 500}"
run_secs="${RUN_SECS:-10}"
warmup="${WARMUP:-3}"
inflight_total="${INFLIGHT_TOTAL:-256}"
command -v jq >/dev/null || { echo "testnet/scaling.sh needs jq" >&2; exit 1; }

trap '"$root/testnet/down.sh" >/dev/null 2>&1 || true' EXIT
(cd "$root" && cargo build --release --locked -p sphr-node -p sphr-bench --bin sphr-node --bin sphr-pte)
pte="$root/target/release/sphr-pte"
results="$(mktemp -d)"
keep="$SPHR_TESTNET_DIR.scaling"
mkdir -p "$keep"

one() { # orgs max_tx label
  local n="$1" max_tx="$2" label="$3"
  BLOCK_MAX_TX="$max_tx" "$root/testnet/up.sh" "$n" >"$results/up.log" 2>&1 || {
    echo "testnet/up.sh $n failed:" >&2; cat "$results/up.log" >&2; exit 1; }
  local per=$((inflight_total / (2 * n)))
  [ "$per" -ge 1 ] || per=1
  local args=(--network "$SPHR_TESTNET_DIR/network" --proc-per-org 2 --mode inflight --inflight "$per")
  "$pte" "${args[@]}" --run-dur "$warmup" >/dev/null 2>&1 || true
  local load
  load="$(cut -d' ' -f1 /proc/loadavg)"
  "$pte" "${args[@]}" --run-dur "$run_secs" --json-out "$keep/$label.json" >"$results/$label.log" 2>&1 || {
    echo "sphr-pte failed for $label:" >&2; tail -n 20 "$results/$label.log" >&2; exit 1; }
  "$root/testnet/down.sh" >/dev/null 2>&1 || true
  jq -r --arg l "$label" --arg n "$n" --arg b "$max_tx" --arg inf "$((2 * n)) x $per" --arg load "$load" \
    '"| \($l) | \($n) | \($b) | \($inf) | \(.tps | floor) | \(.event_latency_ms.p50 * 10 | round / 10) ms | \(.event_latency_ms.p99 * 10 | round / 10) ms | \(.failures) | \($load) |"' \
    "$keep/$label.json"
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(date -u +%Y-%m-%d)"
echo "| run | orgs | max txs per block | in flight | TPS | event p50 | event p99 | failures | load avg at start |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for n in $orgs_list; do one "$n" 100 "orgs-$n"; done
for b in $blocks_list; do
  [ "$b" = 100 ] && [[ " $orgs_list " == *" 4 "* ]] && continue # the 4-org row above
  one 4 "$b" "block-$b"
done
rm -rf "$results"
echo "JSON reports: $keep"
