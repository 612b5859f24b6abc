#!/usr/bin/env bash
# Re-cut the pinned advisory snapshot from a checkout of github.com/rustsec/advisory-db:
# keep crates/<name>/ for every crate named in Cargo.lock or fuzz/Cargo.lock.
#
#   .ci/advisory-db/refresh.sh /path/to/advisory-db
set -euo pipefail
src="${1:?usage: refresh.sh /path/to/advisory-db checkout}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
[[ -d "${src}/crates" ]] || { echo "error: ${src} has no crates/ folder" >&2; exit 1; }
find "${here}/crates" -mindepth 1 -delete 2>/dev/null || true
mkdir -p "${here}/crates"
n=0
while read -r name; do
    if [[ -d "${src}/crates/${name}" ]]; then
        cp -r "${src}/crates/${name}" "${here}/crates/"
        n=$((n + 1))
    fi
done < <(cat "${root}/Cargo.lock" "${root}/fuzz/Cargo.lock" | sed -n 's/^name = "\(.*\)"$/\1/p' | sort -u)
cp "${src}/support.toml" "${src}/LICENSE.txt" "${here}/"
echo "kept ${n} crate folders; source commit $(git -C "${src}" log -1 --format='%H (%cs)')"
