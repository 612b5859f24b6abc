#!/usr/bin/env bash
# FHIR validation (issue 9): every exported resource parses and validates with the R4B models
# of the fhir.resources package (PyPI).
#
#   .ci/fhir.sh            build sphr-node, run a consent flow on a one-node network, validate
#
# The flow, all through the CLI: a hospital (HospitalOrg, one node) ingests the SMR01 fixtures
# (node/vault/tests/fixtures) into its vault and links patient1 to a CHI; its admin registers
# the hospital and doctor1; patient1 registers and makes an ALLOW rule for doctor1 and a DENY
# rule for a department; doctor1 asks twice (granted, denied); the node packages and delivers
# the granted bundle; doctor1 fetches and opens it. Then:
#   sphr-node fhir consent (as patient1)  -> consent.json  (searchset of Consent)
#   sphr-node fhir audit   (as auditor1)  -> audit.json    (searchset of AuditEvent)
#   sphr-node fhir bundle  (the fetched bundle) -> bundle.json (collection)
# and .ci/fhir-validate.py validates each Bundle and each resource in it with fhir.resources
# R4B. The exports are kept in target/fhir-ci/.
#
# Needs: the Rust toolchain and crates.io; python3 (with venv) and PyPI.
# Environment: SPHR_NODE_BIN (a built sphr-node, skips the build), SPHR_FHIR_VENV (where the
# virtualenv lives; reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
export CARGO_TERM_COLOR=never

FHIR_RESOURCES_VERSION="8.0.0"   # the version this script was written and tested against
VENV="${SPHR_FHIR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sphr/fhir-resources-${FHIR_RESOURCES_VERSION}}"
out="$root/target/fhir-ci"
started=$(date +%s)

# ---- python ----------------------------------------------------------------------------------
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed" >&2; exit 1; }
if ! "$VENV/bin/python" -c "import fhir.resources as f; assert f.__version__ == '$FHIR_RESOURCES_VERSION'" 2>/dev/null; then
    echo "== fhir.resources $FHIR_RESOURCES_VERSION in $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "fhir.resources==$FHIR_RESOURCES_VERSION"
fi

# ---- sphr-node -------------------------------------------------------------------------------
if [[ -n "${SPHR_NODE_BIN:-}" ]]; then
    bin="$SPHR_NODE_BIN"
else
    echo "== building sphr-node"
    cargo build --quiet --locked -p sphr-node
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/sphr-node"
fi
built=$(date +%s)

# ---- network ---------------------------------------------------------------------------------
run="$(mktemp -d)"
node_pid=""
cleanup() {
    local rc=$?
    if [[ -n "$node_pid" ]]; then
        kill -TERM "$node_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 ]]; then
        mkdir -p "$out"
        cp "$run/node.log" "$out/node.log" 2>/dev/null || true
        echo "FHIR check failed; node log in target/fhir-ci/node.log" >&2
    fi
    rm -rf "$run"
    exit $rc
}
trap cleanup EXIT INT TERM

read -r api_port p2p_port ops_port < <(python3 -c '
import socket
socks = []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))')
cat >"$run/spec.toml" <<EOF
network = "fhir-ci"
[[orgs]]
name = "HospitalOrg"
[[orgs.nodes]]
name = "node0"
api_port = $api_port
p2p_port = $p2p_port
ops_port = $ops_port
[[orgs.users]]
name = "admin"
role = "admin"
[[orgs.users]]
name = "doctor1"
role = "doctor"
[[orgs]]
name = "PatientOrg"
[[orgs.users]]
name = "patient1"
role = "patient"
[[orgs.users]]
name = "auditor1"
role = "auditor"
[[contracts]]
name = "consent"
policy = "ANY"
EOF
"$bin" genesis --spec "$run/spec.toml" --out "$run/network" >/dev/null
"$bin" config init --network "$run/network" --node node0@HospitalOrg --data-dir "$run/data" \
    --out "$run/node.toml" >/dev/null
"$bin" run --config "$run/node.toml" >"$run/node.out" 2>"$run/node.log" &
node_pid=$!
for _ in $(seq 1 150); do
    "$bin" status --network "$run/network" 2>/dev/null | grep -q "leader=node0@HospitalOrg" && break
    sleep 0.2
done
"$bin" status --network "$run/network" | grep -q "leader=node0@HospitalOrg" \
    || { echo "the node did not come up" >&2; exit 1; }

fx="$root/node/vault/tests/fixtures"
tags="ADMISSIONS,CONDITIONS,OPERATION,BASIC PERSONAL,LOCATION"
as() { local user="$1"; shift; "$bin" "$@" --network "$run/network" --user "$user"; }

echo "== vault: SMR01 fixtures, patient1 linked"
"$bin" vault ingest --config "$run/node.toml" --source smr01 --table "$fx/smr01.csv" \
    --columns "$fx/smr01_columns.csv" --hubs "$fx/smr01_hubs.csv" --quiet >/dev/null
"$bin" vault tags --config "$run/node.toml" --source smr01 --set "$fx/smr01_tags.csv" >/dev/null
"$bin" vault link-patient --config "$run/node.toml" --patient patient1@PatientOrg \
    --chi 0101501234 >/dev/null

echo "== consent flow"
as admin@HospitalOrg consent register-hospital --departments cardiology,surgery \
    --allowed-tags "$tags" --max-rule-days 365 >/dev/null
as admin@HospitalOrg consent register-staff --id doctor1 --department cardiology >/dev/null
as patient1@PatientOrg consent register-patient >/dev/null
as patient1@PatientOrg consent rule create --grantee doctor1@HospitalOrg --tags "$tags" \
    --purpose "follow-up care" --days 30 >/dev/null
as patient1@PatientOrg consent rule create --department surgery@HospitalOrg --deny \
    --tags OPERATION,LEG --purpose "no surgical data" --days 90 >/dev/null
granted="$(as doctor1@HospitalOrg consent request --patient patient1@PatientOrg --tags "$tags" \
    --hospitals HospitalOrg --purpose "ward round")"
request_id="$(grep -o 'request [0-9a-f]\{64\}' <<<"$granted" | head -1 | cut -d' ' -f2)"
[[ -n "$request_id" && "$granted" == *GRANTED* ]] || { echo "request not granted: $granted" >&2; exit 1; }
denied="$(as doctor1@HospitalOrg consent request --patient patient1@PatientOrg --tags LEG \
    --hospitals HospitalOrg --purpose "curiosity")"
[[ "$denied" == *DENIED* ]] || { echo "request not denied: $denied" >&2; exit 1; }
as doctor1@HospitalOrg bundle fetch --request "$request_id" --out "$run/fetched" --wait-secs 60 >/dev/null

echo "== FHIR exports"
rm -rf "$out"
mkdir -p "$out"
as patient1@PatientOrg fhir consent --patient patient1@PatientOrg --out "$out/consent.json" 2>/dev/null
as auditor1@PatientOrg fhir audit --patient patient1@PatientOrg --out "$out/audit.json" 2>/dev/null
"$bin" fhir bundle --in "$run/fetched/HospitalOrg.json" --out "$out/bundle.json" 2>/dev/null

echo "== validating with fhir.resources $FHIR_RESOURCES_VERSION (R4B)"
"$VENV/bin/python" "$root/.ci/fhir-validate.py" "$out/consent.json" "$out/audit.json" "$out/bundle.json"
done_at=$(date +%s)
echo "FHIR check passed: setup and build $((built - started)) s, flow and validation $((done_at - built)) s; exports in target/fhir-ci/"
