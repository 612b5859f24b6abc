#!/usr/bin/env bash
# Fuzz smoke run: build every cargo-fuzz target in fuzz/ and run each for a short time.
#
#   .ci/fuzz-smoke.sh                     every target, 20 s each, inputs up to 4 KiB
#   SPHR_FUZZ_SECONDS=600 SPHR_FUZZ_MAX_LEN=0 SPHR_FUZZ_TARGETS="p2p_frame peer_msg" \
#       SPHR_FUZZ_CORPUS=/var/tmp/sphr-corpus .ci/fuzz-smoke.sh     a long run (docs/fuzzing.md)
#
# Fails if any target crashes (panic, failed assertion, sanitizer report, timeout of one input,
# out-of-memory), or if a reproducer in fuzz/regressions/<target>/ crashes again. Each crash
# is left in the artifacts folder it prints, with the command that replays it.
#
# Environment:
#   SPHR_FUZZ_SECONDS   seconds per target (default 20)
#   SPHR_FUZZ_MAX_LEN   largest input libFuzzer makes, bytes (default 4096; 0 = libFuzzer's
#                       guess from the seeds)
#   SPHR_FUZZ_TARGETS   space-separated targets (default: all, from `cargo fuzz list`)
#   SPHR_FUZZ_CORPUS    folder to keep the corpus in, one subfolder per target (default: a
#                       temporary folder, removed at the end)
#
# Toolchain: cargo-fuzz drives rustc with unstable flags (-Zsanitizer=address, sanitizer
# coverage passes, `--cfg fuzzing`), which stable rustc accepts only with RUSTC_BOOTSTRAP=1.
# Only the fuzz build sets it, in this script's environment; no nightly is needed or fetched,
# and nothing else is built this way. See docs/fuzzing.md.
#
# Needs: the Rust toolchain, a C++ compiler (libFuzzer is built by libfuzzer-sys), crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
export CARGO_TERM_COLOR=never

CARGO_FUZZ_VERSION="0.13.2"        # tested with this version
SECONDS_PER_TARGET="${SPHR_FUZZ_SECONDS:-20}"
MAX_LEN="${SPHR_FUZZ_MAX_LEN:-4096}"

if ! cargo fuzz --version 2>/dev/null | grep -q "^cargo-fuzz ${CARGO_FUZZ_VERSION}\$"; then
    echo "== installing cargo-fuzz ${CARGO_FUZZ_VERSION} from crates.io (once)"
    cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked
fi

# See the header: lets stable rustc take cargo-fuzz's -Z flags.
export RUSTC_BOOTSTRAP=1
cd "${root}/fuzz"

echo "== building the fuzz targets (address sanitizer, debug assertions, release optimisation)"
cargo fuzz build

if [[ -n "${SPHR_FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"${SPHR_FUZZ_TARGETS}"
else
    mapfile -t targets < <(cargo fuzz list)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
corpus_root="${SPHR_FUZZ_CORPUS:-${tmp}/corpus}"
artifacts_root="${root}/fuzz/artifacts"
failed=()
summary=()

for t in "${targets[@]}"; do
    corpus="${corpus_root}/${t}"
    mkdir -p "${corpus}" "${artifacts_root}/${t}"

    # 1. Known reproducers must not crash any more (each file is run once).
    if compgen -G "${root}/fuzz/regressions/${t}/*" >/dev/null; then
        echo "== ${t}: regressions"
        if ! cargo fuzz run "${t}" "${root}/fuzz/regressions/${t}"/* -- \
            -runs=1 -rss_limit_mb=2048 >"${tmp}/${t}.regressions.log" 2>&1; then
            echo "!! ${t}: a reproducer in fuzz/regressions/${t}/ still crashes:"
            tail -n 40 "${tmp}/${t}.regressions.log"
            failed+=("${t} (regression)")
        fi
    fi

    # 2. Fuzz: new inputs go to the corpus folder; the committed seeds are read only.
    seeds=()
    [[ -d "${root}/fuzz/seeds/${t}" ]] && seeds=("${root}/fuzz/seeds/${t}")
    echo "== ${t}: fuzzing ${SECONDS_PER_TARGET} s"
    log="${tmp}/${t}.log"
    status=0
    # -timeout: one input taking over 10 s is a bug (a decoder must be fast on any input).
    # -rss_limit_mb/-malloc_limit_mb: unbounded allocation is a bug too.
    cargo fuzz run "${t}" "${corpus}" "${seeds[@]}" -- \
        -max_total_time="${SECONDS_PER_TARGET}" \
        -max_len="${MAX_LEN}" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="${artifacts_root}/${t}/" >"${log}" 2>&1 || status=$?
    # (No stats line when the target did not even start: keep going and report it.)
    execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "${log}" | tail -n 1 | awk '{print $2}' || true)"
    files="$(find "${corpus}" -type f | wc -l)"
    if [[ "${status}" -ne 0 ]]; then
        echo "!! ${t}: crashed (exit ${status}); artifacts in fuzz/artifacts/${t}/:"
        grep -E "panicked|ERROR: |SUMMARY: |Test unit written|Running:" "${log}" | head -n 20 || true
        tail -n 30 "${log}"
        echo "   replay: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${t} <artifact>)"
        failed+=("${t}")
        summary+=("$(printf '%-16s %6ss %12s execs %6s corpus  CRASH' "${t}" "${SECONDS_PER_TARGET}" "${execs:-?}" "${files}")")
    else
        summary+=("$(printf '%-16s %6ss %12s execs %6s corpus  ok' "${t}" "${SECONDS_PER_TARGET}" "${execs:-?}" "${files}")")
    fi
done

echo
echo "== fuzz summary (target, time, executions, corpus files, result)"
printf '%s\n' "${summary[@]}"
if [[ "${#failed[@]}" -gt 0 ]]; then
    echo "!! failed: ${failed[*]}"
    exit 1
fi
echo "== no crash in ${#targets[@]} targets"
