#!/usr/bin/env bash
# Quick start, the main job: start the four-org testnet of the thesis (PatientOrg, HospitalOrg,
# InsuranceOrg, PharmacyOrg; one node each, all Raft consenters, every org endorses every kv
# transaction) on loopback, run a demo workload, show that all four tips are equal, and stop it.
#
#   testnet/demo.sh        (SPHR_TESTNET_DIR to choose the run dir; KEEP=1 to leave it running)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cleanup() { if [ "${KEEP:-0}" != 1 ]; then "$here/down.sh" || true; fi; }
trap cleanup EXIT

"$here/up.sh" 4
echo
"$here/workload.sh"
echo
echo "== testnet/status.sh"
out=""
for _ in $(seq 1 50); do
  out="$("$here/status.sh")"
  tips="$(printf '%s\n' "$out" | sed -n 's/.* tip=\([0-9a-f]*\) .*/\1/p' | sort -u | wc -l)"
  [ "$tips" = 1 ] && break
  sleep 0.2
done
printf '%s\n' "$out"
if [ "$tips" != 1 ]; then
  echo "the nodes disagree on the tip" >&2
  exit 1
fi
height="$(printf '%s\n' "$out" | sed -n 's/.* height=\([0-9]*\) .*/\1/p' | head -n1)"
echo "all $(printf '%s\n' "$out" | wc -l) nodes at height $height with the same tip"
echo
