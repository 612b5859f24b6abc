#!/usr/bin/env bash
# API fuzzing: schemathesis (PyPI) against the OpenAPI description a live dev node serves.
#
#   .ci/schemathesis.sh                 build sphr-node, start a dev node, run, stop it
#
# It starts `sphr-node dev` in a temporary folder, loads the schema from the node itself
# (https://127.0.0.1:<port>/openapi.json, so what is tested is what is served), and lets
# schemathesis send generated requests, valid and invalid, to every operation. The proposal
# and transaction bodies are CBOR (`format: binary`), so it sends arbitrary bytes there: that
# fuzzes the API's decoders through HTTP. The run fails on:
#   not_a_server_error            any 5xx
#   status_code_conformance       a status the spec does not list for that operation
#   content_type_conformance      a Content-Type the spec does not list for that status
#   response_headers_conformance  a documented response header missing or malformed
#   response_schema_conformance   a body that does not match its schema
#
# Bounded: at most SPHR_ST_MAX_EXAMPLES generated cases per operation (default 30), a time
# budget of SPHR_ST_MAX_TIME seconds for the run (default 240), a request timeout, and an
# outer `timeout` around schemathesis. Deterministic by default (fixed seed, SPHR_ST_SEED).
#
# Not covered: GET /v1/events, a server-sent event stream that never ends, so a generic client
# can only time out on it; it is excluded here (node/tests covers it).
#
# Needs: the Rust toolchain and crates.io; python3 (>= 3.9, with venv) and PyPI.
# Environment: SPHR_NODE_BIN (a built sphr-node, skips the build), SPHR_ST_VENV (where the
# virtualenv lives; reused between runs), SPHR_ST_REPORT (a folder for the JUnit report).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
export CARGO_TERM_COLOR=never

ST_VERSION="4.32.5"                 # the version this script was written and tested against
MAX_EXAMPLES="${SPHR_ST_MAX_EXAMPLES:-30}"
MAX_TIME="${SPHR_ST_MAX_TIME:-240}"
SEED="${SPHR_ST_SEED:-8}"
VENV="${SPHR_ST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sphr/schemathesis-${ST_VERSION}}"

# ---- sphr-node -------------------------------------------------------------------------------
if [[ -n "${SPHR_NODE_BIN:-}" ]]; then
    node_bin="${SPHR_NODE_BIN}"
else
    echo "== building sphr-node (debug profile: the API's behaviour, not its speed, is tested)"
    cargo build --locked -p sphr-node --bin sphr-node
    node_bin="${CARGO_TARGET_DIR:-${root}/target}/debug/sphr-node"
fi

# ---- schemathesis in a virtualenv --------------------------------------------------------------
if [[ ! -x "${VENV}/bin/schemathesis" ]] \
    || ! "${VENV}/bin/python" -m pip show schemathesis 2>/dev/null | grep -q "^Version: ${ST_VERSION}\$"; then
    echo "== installing schemathesis ${ST_VERSION} from PyPI into ${VENV}"
    python3 -m venv "${VENV}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==${ST_VERSION}"
fi

# ---- a dev node on free ports ----------------------------------------------------------------
work="$(mktemp -d)"
node_pid=""
cleanup() {
    if [[ -n "${node_pid}" ]] && kill -0 "${node_pid}" 2>/dev/null; then
        kill -TERM "${node_pid}" 2>/dev/null || true
        # Give it 15 s to stop gracefully, then kill it.
        for _ in $(seq 1 30); do
            kill -0 "${node_pid}" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "${node_pid}" 2>/dev/null || true
        wait "${node_pid}" 2>/dev/null || true
    fi
    rm -rf "${work}"
}
trap cleanup EXIT

# Three free TCP ports on loopback (the OS picks them; a race with another process is possible
# but unlikely, and shows as a node that does not start).
read -r api_port p2p_port ops_port < <(python3 - <<'PY'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
PY
)

# `sphr-node dev` makes its network from the built-in dev spec, whose ports are fixed (7443,
# 7000, 9443) and may be in use on a shared machine. So the network is made first from the
# same spec (genesis/dev.toml) with free ports; `dev` then finds it and writes its node.toml
# from it. SPHR_API_LISTEN / SPHR_OPS_LISTEN pin the listeners as well.
sed -e "s/^api_port = .*/api_port = ${api_port}/" \
    -e "s/^p2p_port = .*/p2p_port = ${p2p_port}/" \
    -e "s/^ops_port = .*/ops_port = ${ops_port}/" \
    genesis/dev.toml >"${work}/dev.toml"
"${node_bin}" genesis --spec "${work}/dev.toml" --out "${work}/dev/network" >/dev/null

echo "== starting sphr-node dev (API https://127.0.0.1:${api_port})"
SPHR_API_LISTEN="127.0.0.1:${api_port}" SPHR_OPS_LISTEN="127.0.0.1:${ops_port}" SPHR_LOG=warn \
    "${node_bin}" dev --dir "${work}/dev" >"${work}/node.out" 2>"${work}/node.err" &
node_pid=$!

# Ready when it prints `sphr-node serving <url>` (after the API listens), within 90 s.
for _ in $(seq 1 180); do
    grep -q "^sphr-node serving " "${work}/node.out" 2>/dev/null && break
    if ! kill -0 "${node_pid}" 2>/dev/null; then
        echo "error: sphr-node exited before serving:" >&2
        cat "${work}/node.err" >&2
        exit 1
    fi
    sleep 0.5
done
if ! grep -q "^sphr-node serving " "${work}/node.out"; then
    echo "error: sphr-node did not serve within 90 s" >&2
    tail -n 50 "${work}/node.err" >&2
    exit 1
fi
base="https://127.0.0.1:${api_port}"
ca="${work}/dev/network/tls-ca.pem"

# One committed transaction, so that block 1 and a tx exist and their 200 answers are checked
# against the schema too (random bodies never make a valid signed proposal).
echo "== one kv put through the CLI"
timeout 60 "${node_bin}" invoke --network "${work}/dev/network" --node "${base}" --json \
    kv put greeting hello >"${work}/invoke.json"
tx_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tx_id"])' "${work}/invoke.json")"
echo "   committed tx ${tx_id}"

# ---- schemathesis ----------------------------------------------------------------------------
echo "== schemathesis ${ST_VERSION}: ${base}/openapi.json, <= ${MAX_EXAMPLES} cases per operation, <= ${MAX_TIME} s"
# schemathesis has no serializer for application/cbor; the bodies are `format: binary`
# (arbitrary bytes), which its octet-stream serializer sends as they are, with the operation's
# Content-Type (application/cbor). A hooks module, loaded through SCHEMATHESIS_HOOKS, says so.
cat >"${work}/sphr_st_hooks.py" <<'PY'
import schemathesis

schemathesis.serializer.alias("application/cbor", "application/octet-stream")
PY
export PYTHONPATH="${work}${PYTHONPATH:+:${PYTHONPATH}}"
export SCHEMATHESIS_HOOKS="sphr_st_hooks"

report_args=()
if [[ -n "${SPHR_ST_REPORT:-}" ]]; then
    mkdir -p "${SPHR_ST_REPORT}"
    report_args=(--report junit --report-dir "${SPHR_ST_REPORT}")
fi
status=0
# schemathesis keeps a cache of failures (.schemathesis/) in its working folder: run it from
# the temporary one, so nothing lands in the repository.
cd "${work}"
# The outer timeout is the hard bound: the run's own budget plus time to start and shrink.
timeout --signal=TERM --kill-after=30 "$((MAX_TIME + 180))" \
    "${VENV}/bin/schemathesis" run "${base}/openapi.json" \
    --url "${base}" \
    --tls-verify "${ca}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-path /v1/events \
    --max-examples "${MAX_EXAMPLES}" \
    --max-time "${MAX_TIME}" \
    --seed "${SEED}" \
    --request-timeout 30 \
    --workers 1 \
    --generation-database none \
    --no-color \
    "${report_args[@]}" || status=$?

# Generated ids and numbers almost never name the committed tx or block 1, so their 200
# answers are checked once more with those values fixed (positive cases only).
if [[ "${status}" -eq 0 ]]; then
    cat >"${work}/known.toml" <<TOML
[[operations]]
include-path = "/v1/transactions/{tx_id}"
parameters = { "path.tx_id" = "${tx_id}" }

[[operations]]
include-path = "/v1/blocks/{number}"
parameters = { "path.number" = 1 }
TOML
    echo "== schemathesis: GET /v1/transactions/${tx_id} and /v1/blocks/1"
    timeout --signal=TERM --kill-after=30 300 \
        "${VENV}/bin/schemathesis" --config-file "${work}/known.toml" run "${base}/openapi.json" \
        --url "${base}" \
        --tls-verify "${ca}" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --include-path /v1/transactions/{tx_id} \
        --include-path /v1/blocks/{number} \
        --mode positive \
        --max-examples 5 \
        --seed "${SEED}" \
        --request-timeout 30 \
        --workers 1 \
        --generation-database none \
        --no-color || status=$?
fi

# The node must have survived everything it was sent.
if ! kill -0 "${node_pid}" 2>/dev/null; then
    echo "error: sphr-node died during the run:" >&2
    tail -n 50 "${work}/node.err" >&2
    exit 1
fi
if grep -qi "panicked" "${work}/node.err"; then
    echo "error: sphr-node logged a panic during the run:" >&2
    grep -i -A5 "panicked" "${work}/node.err" >&2
    exit 1
fi

if [[ "${status}" -ne 0 ]]; then
    echo "== schemathesis found problems (exit ${status}); node log tail:"
    tail -n 20 "${work}/node.err"
    exit "${status}"
fi
echo "== schemathesis: no 5xx, every response as the spec says"
