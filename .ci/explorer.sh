#!/usr/bin/env bash
# Browser test of the explorer (issue 9): headless Chromium, driven by playwright-core, against
# a three-node network on loopback.
#
#   .ci/explorer.sh            build sphr-node, start 3 orgs, run the check, stop them
#
# It starts a 3-org network (one consenter node each, free loopback ports, a temp folder),
# keeps sending kv transactions through every org's node, and runs .ci/explorer-check.cjs,
# which opens https://<node 1>/explorer and checks that:
#   - every node of the network is listed, reachable, with a height;
#   - the height shown rises while transactions are sent (and the TPS chart has data);
#   - a block opened from the list shows its transactions with their validation codes;
#   - a transaction opened from the block shows its detail;
# and writes target/explorer.png (docs/explorer.png is a copy of one such screenshot).
#
# The network's TLS CA is a local ed25519 CA that browsers cannot verify (the node answers a
# browser with a self-signed P-256 certificate, see node/src/tls.rs), so the check ignores
# HTTPS errors, in a browser context that only ever loads the loopback explorer.
#
# Needs: the Rust toolchain and crates.io; Debian packages chromium (installed with apt-get
# when missing; CI runs as root); node and npm (playwright-core from npm, pinned, installed
# under target/). Environment: SPHR_NODE_BIN (a built sphr-node, skips the build),
# SPHR_EXPLORER_WORK (where playwright-core is installed; default target/explorer-ci).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
export CARGO_TERM_COLOR=never

PW_VERSION="1.65.1"     # playwright-core, the version this script was written and tested with
work="${SPHR_EXPLORER_WORK:-$root/target/explorer-ci}"
started=$(date +%s)

# ---- browser ---------------------------------------------------------------------------------
if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium (apt-get)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
fi
chromium_bin="$(command -v chromium)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "== installing nodejs and npm (apt-get)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi
for tool in node npm python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is needed" >&2; exit 1; }
done
mkdir -p "$work"
have="$(node -e "try{console.log(require('$work/node_modules/playwright-core/package.json').version)}catch(e){}" 2>/dev/null || true)"
if [[ "$have" != "$PW_VERSION" ]]; then
    echo "== installing playwright-core@$PW_VERSION (npm) in $work"
    (cd "$work" && npm install --no-save --no-audit --no-fund --loglevel=error \
        "playwright-core@$PW_VERSION" >/dev/null)
fi

# ---- sphr-node ---------------------------------------------------------------------------------
if [[ -n "${SPHR_NODE_BIN:-}" ]]; then
    bin="$SPHR_NODE_BIN"
else
    echo "== building sphr-node"
    cargo build --quiet --locked -p sphr-node
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/sphr-node"
fi
built=$(date +%s)

# ---- network -----------------------------------------------------------------------------------
run="$(mktemp -d)"
pids=()
cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        mkdir -p "$root/target/explorer-ci/logs"
        cp "$run"/*.log "$root/target/explorer-ci/logs/" 2>/dev/null || true
        echo "explorer check failed; node logs in target/explorer-ci/logs" >&2
    fi
    rm -rf "$run"
    exit $rc
}
trap cleanup EXIT INT TERM

ports=($(python3 -c '
import socket
socks = []
for _ in range(9):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))'))
{
    echo 'network = "explorer-ci"'
    echo '[block]'
    echo 'batch_timeout_ms = 20'
    for i in 0 1 2; do
        echo '[[orgs]]'
        echo "name = \"Org$((i + 1))\""
        echo '[[orgs.nodes]]'
        echo 'name = "node0"'
        echo "api_port = ${ports[$((3 * i))]}"
        echo "p2p_port = ${ports[$((3 * i + 1))]}"
        echo "ops_port = ${ports[$((3 * i + 2))]}"
        echo '[[orgs.users]]'
        echo 'name = "loadgen"'
        echo 'role = "client"'
    done
    echo '[[contracts]]'
    echo 'name = "kv"'
    echo 'policy = "MAJORITY"'
} >"$run/spec.toml"
"$bin" genesis --spec "$run/spec.toml" --out "$run/network" >/dev/null
mapfile -t nodes < <("$bin" network list --network "$run/network")
apis=()
for line in "${nodes[@]}"; do
    read -r id api _ <<<"$line"
    org="${id#*@}"
    "$bin" config init --network "$run/network" --node "$id" --data-dir "$run/$org/data" \
        --out "$run/$org.toml" >/dev/null
    "$bin" run --config "$run/$org.toml" >"$run/$org.out" 2>"$run/$org.log" &
    pids+=($!)
    apis+=("$api")
done
echo "== network of ${#nodes[@]} nodes: ${apis[*]}"
for _ in $(seq 1 300); do
    ready=0
    for line in "${nodes[@]}"; do
        read -r id _ <<<"$line"
        s="$("$bin" status --network "$run/network" --node "$id" 2>/dev/null || true)"
        [[ "$s" == *"leader=node0@"* && "$s" == *"peers=2"* ]] && ready=$((ready + 1))
    done
    [[ $ready -eq ${#nodes[@]} ]] && break
    sleep 0.2
done
[[ $ready -eq ${#nodes[@]} ]] || { echo "the network did not come up" >&2; exit 1; }

# Transactions through every org's node, until stopped.
(
    i=0
    while true; do
        for org in Org1 Org2 Org3; do
            "$bin" invoke --network "$run/network" --node "node0@$org" --user "loadgen@$org" \
                kv put "key$i" "value$i" >/dev/null 2>&1 || true
            i=$((i + 1))
        done
    done
) &
pids+=($!)

# ---- the browser check -------------------------------------------------------------------------
mkdir -p "$root/target"
node "$root/.ci/explorer-check.cjs" --playwright "$work" \
    --url "https://${apis[0]}/explorer" \
    --chromium "$chromium_bin" \
    --nodes "$(printf '%s\n' "${nodes[@]}" | awk '{print $1}' | paste -sd, -)" \
    --screenshot "$root/target/explorer.png"
done_at=$(date +%s)
echo "explorer check passed: build $((built - started)) s, network and browser $((done_at - built)) s; screenshot target/explorer.png"
