#!/usr/bin/env bash
# Chaos run: the 4-org network under sphr-pte load through a seeded sequence of faults, then a
# check that nothing acknowledged was lost and that every node agrees.
#
#   testnet/chaos.sh [--short] [--seed N] [--keep]
#
# 1. builds sphr-node and sphr-pte (release) and starts 4 orgs (PatientOrg, HospitalOrg,
#    InsuranceOrg, PharmacyOrg; one node each, all Raft consenters) in a folder of its own
#    (CHAOS_DIR, default a new /tmp/sphr-chaos.XXXXXX) on ports of its own: 12 ports from
#    CHAOS_BASE_PORT (default 17100; api +0..3, p2p +10..13, ops +20..23), checked free first,
#    so it runs beside testnet/up.sh (7443.., 7000.., 9443..). The kv contract is endorsed by a
#    MAJORITY of orgs here (the testnet uses ALL): with ALL, no kv transaction could commit
#    while any node is down, and the faults would be tested without load.
#    Every node runs with `p2p.fault_injection = true` (the p2p fault switch, for step 4) and
#    `node.worker_threads` = CPUs / 4, at least 1 (as testnet/up.sh sets it).
# 2. sphr-pte runs throughout (rate mode, RATE tx/s, gateway flow, one process per org) and
#    writes every tx it saw committed, with its validation code, to committed.txt.
# 3. the seeded sequence (the seed picks the nodes and the timings; printed, so a run can be
#    repeated with --seed):
#      1) SIGKILL a follower, restart it;
#      2) SIGKILL the leader (from /v1/status), restart it;
#      3) SIGSTOP a node for 10 s, SIGCONT it;
#      4) cut a node off from the others (PUT /faults/p2p on its ops port), heal it;
#      5) SIGKILL all nodes at once, restart them all.
# 4. waits for convergence, then checks:
#      - every tx sphr-pte saw committed is on every node with the same validation code
#        (GET /v1/transactions/{id} on each node);
#      - every node has the same height, tip hash and world-state hash;
#      - no node process died except the ones killed on purpose.
#    prints the counts and exits 1 on any difference.
#
# --short (CI): shorter pauses and load (about 2 minutes once built; the full run about 5);
# --keep leaves the nodes
# running and the folder in place. Environment: CHAOS_DIR, CHAOS_BASE_PORT, RATE (default
# 100; 60 with --short), SPHR_NODE_BIN and SPHR_PTE_BIN (both set: use these binaries instead
# of building release ones).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

short=0
keep=0
seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1 ;;
    --keep) keep=1 ;;
    --seed) seed="${2:?--seed needs a number}"; shift ;;
    --seed=*) seed="${1#--seed=}" ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "usage: testnet/chaos.sh [--short] [--seed N] [--keep]" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$seed" ] || seed=$(( $(date +%s) % 100000 ))
case "$seed" in ''|*[!0-9]*) echo "--seed must be a number" >&2; exit 2 ;; esac
RANDOM=$seed
base="${CHAOS_BASE_PORT:-17100}"
if [ "$short" = 1 ]; then
  rate="${RATE:-60}"; settle=4; down_min=2; down_span=3; cut_min=4; cut_span=4
else
  rate="${RATE:-100}"; settle=12; down_min=4; down_span=8; cut_min=8; cut_span=12
fi
for tool in curl jq ss; do
  command -v "$tool" >/dev/null || { echo "testnet/chaos.sh needs $tool" >&2; exit 1; }
done

# Any listening port in our range means someone else is there.
for off in 0 1 2 3 10 11 12 13 20 21 22 23; do
  port=$((base + off))
  if ss -ltnH "sport = :$port" | grep -q .; then
    echo "port $port is in use: choose other ports with CHAOS_BASE_PORT" >&2
    exit 1
  fi
done

if [[ -n "${SPHR_NODE_BIN:-}" && -n "${SPHR_PTE_BIN:-}" ]]; then
  # Already built (CI passes the debug binaries its test run built).
  echo "== using $SPHR_NODE_BIN and $SPHR_PTE_BIN"
  bin="$SPHR_NODE_BIN"
  pte="$SPHR_PTE_BIN"
else
  echo "== building sphr-node and sphr-pte (release)"
  (cd "$root" && cargo build --release --locked -p sphr-node -p sphr-bench --bin sphr-node --bin sphr-pte)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/sphr-node"
  pte="${CARGO_TARGET_DIR:-$root/target}/release/sphr-pte"
fi

dir="${CHAOS_DIR:-$(mktemp -d /tmp/sphr-chaos.XXXXXX)}"
mkdir -p "$dir"
net="$dir/network"
orgs=(PatientOrg HospitalOrg InsuranceOrg PharmacyOrg)
n=${#orgs[@]}
workers=$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))
pids=()
pte_pid=""
killed_on_purpose=0
unexpected=()

log() { printf '%s [chaos] %s\n' "$(date +%H:%M:%S)" "$*"; }

stop_all() {
  [ -n "$pte_pid" ] && kill -TERM "$pte_pid" 2>/dev/null || true
  for i in "${!pids[@]}"; do
    local p="${pids[$i]}"
    [ -n "$p" ] || continue
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null || true
  done
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for p in "${pids[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
}
cleanup() {
  if [ "$keep" = 1 ]; then
    log "--keep: nodes left running (pids ${pids[*]}), folder $dir"
    return
  fi
  stop_all
  log "logs and data kept in $dir"
}
trap cleanup EXIT

# ---- network --------------------------------------------------------------------------------
{
  echo "# Made by testnet/chaos.sh (seed $seed): 4 orgs, one consenter node each."
  echo 'network = "chaos"'
  for i in $(seq 0 $((n - 1))); do
    echo "[[orgs]]"
    echo "name = \"${orgs[$i]}\""
    echo "[[orgs.nodes]]"
    echo "name = \"node0\""
    echo "api_port = $((base + i))"
    echo "p2p_port = $((base + 10 + i))"
    echo "ops_port = $((base + 20 + i))"
    echo "[[orgs.users]]"
    echo "name = \"loadgen\""
    echo "role = \"client\""
    echo "pre_key = false"
  done
  echo "[[contracts]]"
  echo 'name = "kv"'
  echo 'policy = "MAJORITY"'
} >"$dir/spec.toml"
log "seed $seed, folder $dir, ports $base.. ($([ "$short" = 1 ] && echo short || echo full) run)"
"$bin" genesis --spec "$dir/spec.toml" --out "$net" >/dev/null
mapfile -t ids < <("$bin" network list --network "$net" | awk '{print $1}')
[ "${#ids[@]}" = "$n" ] || { echo "expected $n nodes in $net, got ${#ids[@]}" >&2; exit 1; }
for i in "${!ids[@]}"; do
  org="${ids[$i]#*@}"
  "$bin" config init --network "$net" --node "${ids[$i]}" --data-dir "$dir/$org/data" \
    --out "$dir/$org.toml" >/dev/null
  # Four nodes share this machine: each gets CPUs / nodes runtime workers, as testnet/up.sh
  # gives them, so that the faults are run against the configuration the benchmarks use.
  sed -i "/^\[node\]$/a worker_threads = $workers" "$dir/$org.toml"
  if grep -q '^\[p2p\]' "$dir/$org.toml"; then
    sed -i '/^\[p2p\]/a fault_injection = true' "$dir/$org.toml"
  else
    printf '\n[p2p]\nfault_injection = true\n' >>"$dir/$org.toml"
  fi
done

ops_url() { echo "http://127.0.0.1:$((base + 20 + $1))"; }

start_node() {
  local i="$1" org="${ids[$1]#*@}"
  SPHR_OPS_LISTEN="127.0.0.1:$((base + 20 + i))" \
    "$bin" run --config "$dir/$org.toml" >>"$dir/$org.out" 2>>"$dir/$org.log" &
  pids[$i]=$!
}

status_json() { "$bin" status --network "$net" --node "${ids[$1]}" --json 2>/dev/null; }

# Healthy: answers, knows a leader and sees all its peers.
wait_ready() {
  local what="$1" deadline=$((SECONDS + 90)) i s ready
  while :; do
    ready=0
    for i in "${!ids[@]}"; do
      if s="$(status_json "$i")" &&
        [ "$(jq -r '.leader // "-"' <<<"$s")" != "-" ] &&
        [ "$(jq -r .peers <<<"$s")" = $((n - 1)) ]; then
        ready=$((ready + 1))
      fi
    done
    [ "$ready" = "$n" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "nodes not healthy within 90 s ($what); logs in $dir" >&2
      exit 1
    fi
    sleep 0.3
  done
}

# Every process we did not kill must still be running.
check_alive() {
  local i
  for i in "${!ids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      unexpected+=("${ids[$i]} (pid ${pids[$i]}) died during: $1")
      log "UNEXPECTED: ${ids[$i]} is not running; restarting it"
      start_node "$i"
    fi
  done
}

leader_index() {
  local i s l
  for i in "${!ids[@]}"; do
    if s="$(status_json "$i")"; then
      l="$(jq -r '.leader // "-"' <<<"$s")"
      for j in "${!ids[@]}"; do [ "${ids[$j]}" = "$l" ] && { echo "$j"; return 0; }; done
    fi
  done
  return 1
}

pick_follower() {
  local l="$1" k
  k=$((RANDOM % (n - 1)))
  for i in "${!ids[@]}"; do
    [ "$i" = "$l" ] && continue
    [ "$k" = 0 ] && { echo "$i"; return; }
    k=$((k - 1))
  done
}

kill9_restart() {
  local i="$1" why="$2" down=$((down_min + RANDOM % down_span))
  log "$why: SIGKILL ${ids[$i]} (pid ${pids[$i]}), down ${down} s"
  kill -KILL "${pids[$i]}"
  wait "${pids[$i]}" 2>/dev/null || true
  killed_on_purpose=$((killed_on_purpose + 1))
  sleep "$down"
  start_node "$i"
  log "$why: restarted ${ids[$i]} (pid ${pids[$i]})"
  wait_ready "$why"
}

for i in "${!ids[@]}"; do start_node "$i"; done
wait_ready "start"
log "network up: ${ids[*]}"

# ---- load -------------------------------------------------------------------------------------
# Long enough to cover the sequence; the script waits for it to end before checking.
if [ "$short" = 1 ]; then run_dur=100; else run_dur=300; fi
"$pte" --network "$net" --mode rate --rate "$rate" --run-dur "$run_dur" --flow gateway \
  --proc-per-org 1 --event-timeout 45000 --seed "$seed" --no-progress \
  --committed-out "$dir/committed.txt" --json-out "$dir/pte.json" >"$dir/pte.out" 2>"$dir/pte.log" &
pte_pid=$!
log "sphr-pte: $rate tx/s for $run_dur s (pid $pte_pid)"
sleep "$settle"

# ---- the sequence -----------------------------------------------------------------------------
l="$(leader_index)"
f="$(pick_follower "$l")"
kill9_restart "$f" "step 1 (follower)"
sleep "$settle"; check_alive "step 1"

l="$(leader_index)"
kill9_restart "$l" "step 2 (leader)"
sleep "$settle"; check_alive "step 2"

s=$((RANDOM % n))
log "step 3: SIGSTOP ${ids[$s]} (pid ${pids[$s]}) for 10 s"
kill -STOP "${pids[$s]}"
sleep 10
kill -CONT "${pids[$s]}"
log "step 3: SIGCONT ${ids[$s]}"
wait_ready "step 3"
sleep "$settle"; check_alive "step 3"

c=$((RANDOM % n))
cut=$((cut_min + RANDOM % cut_span))
log "step 4: cut ${ids[$c]} off from its peers for ${cut} s"
curl -fsS -X PUT "$(ops_url "$c")/faults/p2p" -d '{"isolated":true}' >/dev/null
sleep "$cut"
curl -fsS -X PUT "$(ops_url "$c")/faults/p2p" -d '{"isolated":false}' >/dev/null
log "step 4: healed ${ids[$c]}"
wait_ready "step 4"
sleep "$settle"; check_alive "step 4"

log "step 5: SIGKILL all nodes at once"
for i in "${!ids[@]}"; do kill -KILL "${pids[$i]}"; done
for i in "${!ids[@]}"; do wait "${pids[$i]}" 2>/dev/null || true; done
killed_on_purpose=$((killed_on_purpose + n))
sleep $((down_min + RANDOM % down_span))
for i in "${!ids[@]}"; do start_node "$i"; done
log "step 5: all restarted"
wait_ready "step 5"
check_alive "step 5"

log "sequence done; waiting for sphr-pte to finish"
pte_rc=0
wait "$pte_pid" || pte_rc=$?
pte_pid=""
check_alive "the end of the load"
log "sphr-pte exited with $pte_rc; its report:"
tail -n 15 "$dir/pte.out" || true

# ---- convergence --------------------------------------------------------------------------------
log "waiting for every node to reach the same height, tip and state hash"
deadline=$((SECONDS + 60))
while :; do
  mapfile -t views < <(for i in "${!ids[@]}"; do status_json "$i" | jq -r '"\(.height) \(.tip) \(.state_hash)"' || echo "down"; done)
  uniq_views="$(printf '%s\n' "${views[@]}" | sort -u | wc -l)"
  [ "$uniq_views" = 1 ] && [ "${views[0]}" != down ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then break; fi
  sleep 1
done

# ---- checks -------------------------------------------------------------------------------------
fail=0
read -r height tip state <<<"${views[0]}"
if [ "$uniq_views" != 1 ]; then
  fail=1
  echo "nodes differ after 60 s:" >&2
  for i in "${!ids[@]}"; do echo "  ${ids[$i]}: ${views[$i]}" >&2; done
fi

committed="$dir/committed.txt"
[ -f "$committed" ] || : >"$committed"
check_rc=0
"$pte" --network "$net" --check-committed "$committed" >"$dir/check.json" 2>"$dir/check.log" || check_rc=$?
if ! jq -e . "$dir/check.json" >/dev/null 2>&1; then
  echo "the committed-tx check failed to run:" >&2
  cat "$dir/check.log" >&2
  echo '{"acknowledged":0,"valid":0,"found_on_every_node":0,"problem_count":1,"problems":[]}' >"$dir/check.json"
fi
acked="$(jq -r .acknowledged "$dir/check.json")"
valid="$(jq -r .valid "$dir/check.json")"
found="$(jq -r .found_on_every_node "$dir/check.json")"
problems="$(jq -r .problem_count "$dir/check.json")"
jq -r '.problems[] | "  \(.[0]): \(.[1]) acknowledged as \(.[2]), node says \(.[3])"' "$dir/check.json" >&2 || true

echo
echo "== chaos run (seed $seed$([ "$short" = 1 ] && echo ", short"))"
echo "txs acknowledged:        $acked ($valid VALID)"
echo "txs found on every node: $found"
echo "nodes:                   $n"
echo "height:                  $height"
echo "tip hash:                $tip"
echo "state hash:              $state"
echo "nodes agree:             $([ "$uniq_views" = 1 ] && echo yes || echo NO)"
echo "killed on purpose:       $killed_on_purpose"
echo "unexpected deaths:       ${#unexpected[@]}"
for u in "${unexpected[@]}"; do echo "  $u"; done
[ "$problems" = 0 ] || { echo "lookups that differ:     $problems (missing or another code)"; fail=1; }
[ "$check_rc" = 0 ] || fail=1
[ "$found" = "$acked" ] || fail=1
[ "${#unexpected[@]}" = 0 ] || fail=1
[ "$acked" -gt 0 ] || { echo "sphr-pte saw nothing committed" >&2; fail=1; }
if [ "$fail" = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL (logs in $dir)"; fi
exit "$fail"
