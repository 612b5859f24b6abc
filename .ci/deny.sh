#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config: deny.toml at the repository root).
#
#   .ci/deny.sh
#
# What runs:
#   - licenses, bans, sources: always. They need only Cargo.lock and the crates' sources from
#     crates.io (fetched first), so they run with `--offline` and cannot be skipped by a network
#     failure.
#   - advisories: against a copy of the RustSec advisory database on this machine, because
#     that database is a git repository on GitHub and CI here reaches crates.io only. It is
#     looked for, in order, at:
#       $SPHR_ADVISORY_DB            a checkout of https://github.com/rustsec/advisory-db
#       $CARGO_HOME/advisory-dbs/advisory-db-3157b0e258782691   where `cargo deny fetch` puts it
#       .ci/advisory-db              the pinned snapshot in this repository (its README)
#     With SPHR_DENY_FETCH=1 the script first runs `cargo deny fetch db` (needs github.com).
#     Without a database the script says loudly that advisories were NOT checked, and passes:
#     the other checks are still worth a green run, and a skipped check is not a silent pass.
#     Set SPHR_DENY_REQUIRE_ADVISORIES=1 to make a missing database a failure instead.
#
# Needs: the Rust toolchain and crates.io (cargo-deny is installed from it if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# Same version as tested; `--locked` builds it with its own lockfile, as its authors tested it.
DENY_VERSION="0.20.2"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

if ! cargo deny --version 2>/dev/null | grep -q "^cargo-deny ${DENY_VERSION}\$"; then
    echo "== installing cargo-deny ${DENY_VERSION} from crates.io (a few minutes, once)"
    cargo install cargo-deny --version "${DENY_VERSION}" --locked
fi
cargo deny --version

# The license check reads license files from the crates' sources; make sure they are local.
echo "== cargo fetch (crates.io)"
cargo fetch --locked

echo "== cargo deny: licenses, bans, sources"
# Duplicate versions are warnings (deny.toml); their inclusion graphs run to hundreds of lines,
# so the first pass hides graphs, and only a failure is re-run with them, to show who pulls in
# the offending crate.
if ! cargo deny --offline --locked check --hide-inclusion-graph licenses bans sources; then
    echo "== failed; again with inclusion graphs"
    cargo deny --offline --locked check licenses bans sources || true
    exit 1
fi

# ---- advisories ------------------------------------------------------------------------------
# cargo-deny names its copy of a database after a hash of the URL in deny.toml's db-urls.
DB_DIR_NAME="advisory-db-3157b0e258782691"
DEFAULT_DB="${CARGO_HOME}/advisory-dbs/${DB_DIR_NAME}"

if [[ "${SPHR_DENY_FETCH:-0}" == "1" ]]; then
    echo "== cargo deny fetch db (SPHR_DENY_FETCH=1: needs github.com)"
    cargo deny fetch db
fi

db=""
if [[ -n "${SPHR_ADVISORY_DB:-}" ]]; then
    db="${SPHR_ADVISORY_DB}"
elif [[ -d "${DEFAULT_DB}/crates" ]]; then
    db="${DEFAULT_DB}"
elif [[ -d ".ci/advisory-db/crates" ]]; then
    # The pinned snapshot (.ci/advisory-db/README.md): cargo-deny reads the database's git
    # HEAD, so it becomes a one-commit repository dated like the snapshot.
    snap_date="$(sed -n 's/^- source commit: `[0-9a-f]*` (\([0-9-]*\))$/\1/p' .ci/advisory-db/README.md)"
    snap="$(mktemp -d)"
    cp -r .ci/advisory-db/. "${snap}/"
    (
        cd "${snap}"
        git init -q
        git add -A
        GIT_AUTHOR_DATE="${snap_date}T00:00:00Z" GIT_COMMITTER_DATE="${snap_date}T00:00:00Z" \
            git -c user.name=sphr-ci -c user.email=ci@sphr.invalid commit -q -m "advisory-db snapshot ${snap_date}"
    )
    db="${snap}"
    echo "== advisories: pinned snapshot .ci/advisory-db (${snap_date}; see its README)"
fi

if [[ -z "${db}" ]]; then
    echo
    echo "!! advisories NOT checked: no RustSec advisory database on this machine"
    echo "!!   (looked at \$SPHR_ADVISORY_DB and ${DEFAULT_DB})."
    echo "!!   github.com is not reachable from this CI, so it is not fetched. To check them:"
    echo "!!   SPHR_DENY_FETCH=1 .ci/deny.sh, or SPHR_ADVISORY_DB=/path/to/advisory-db .ci/deny.sh"
    if [[ "${SPHR_DENY_REQUIRE_ADVISORIES:-0}" == "1" ]]; then
        echo "!! SPHR_DENY_REQUIRE_ADVISORIES=1: failing."
        exit 1
    fi
    echo "== cargo deny: licenses, bans, sources passed; advisories skipped (see above)"
    exit 0
fi

if [[ ! -d "${db}/crates" ]]; then
    echo "error: ${db} does not look like the RustSec advisory database (no crates/ folder)" >&2
    exit 1
fi
# cargo-deny reads the database's git HEAD (for its date), so it must be a git checkout.
if ! git -C "${db}" rev-parse --verify -q HEAD >/dev/null; then
    echo "error: ${db} is not a git checkout of the advisory database" >&2
    exit 1
fi
echo "== cargo deny: advisories, database ${db} ($(git -C "${db}" log -1 --format=%cs HEAD))"

# Point cargo-deny at that database without touching deny.toml: a copy of the config whose
# db-path is a temporary folder holding the database under the name cargo-deny expects.
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}" "${snap:-}"' EXIT
mkdir -p "${tmp}/dbs"
ln -s "$(cd "${db}" && pwd)" "${tmp}/dbs/${DB_DIR_NAME}"
sed "s|^db-path = .*|db-path = \"${tmp}/dbs\"|" deny.toml >"${tmp}/deny.toml"
cargo deny --offline --locked --config "${tmp}/deny.toml" check advisories
echo "== cargo deny: all four checks passed"
