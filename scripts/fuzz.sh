#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for a bounded time with the stable
# toolchain (RUSTC_BOOTSTRAP=1 enables the sanitizer flags cargo-fuzz needs).
# A crash fails the run; its input is left in fuzz/artifacts/<target>/ and
# belongs in tests/data/fuzz-regressions/<target>/ once fixed.
# Usage: scripts/fuzz.sh [seconds per target]   (default: $FUZZ_SECONDS or 60)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-60}}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
cargo fuzz build -O
for target in guard front_door; do
    corpus="fuzz/corpus/${target}"
    mkdir -p "${corpus}"
    # The regression inputs seed the corpus.
    cp -n tests/data/fuzz-regressions/"${target}"/* "${corpus}/" 2>/dev/null || true
    log="fuzz/${target}.log"
    cargo fuzz run -O "${target}" "${corpus}" -- \
        -max_total_time="${SECONDS_PER_TARGET}" -rss_limit_mb=2048 -timeout=10 \
        >"${log}" 2>&1 || { tail -50 "${log}"; echo "fuzz target ${target} failed" >&2; exit 1; }
    # libFuzzer's last status line: "#<executions> DONE ..." plus the summary.
    runs=$(grep -Eo 'Done [0-9]+ runs' "${log}" | tail -1 || true)
    echo "fuzz ${target}: ${runs:-no summary} in ${SECONDS_PER_TARGET}s"
done
