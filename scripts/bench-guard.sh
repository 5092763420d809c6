#!/usr/bin/env bash
# Runs benches/guard.rs and prints, per seed query, the median time of parsing
# alone, of the whole guard (guard::check) and of a decision-cache hit, and
# their ratios to parsing; then the two-thread cache contention figures.
# Extra arguments go to criterion (e.g. a filter: scripts/bench-guard.sh insert).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench guard -- "$@" >&2
python3 - <<'PY'
import json, os
root = "target/criterion"
rows = []
for group in sorted(os.listdir(root)):
    def median(bench):
        path = os.path.join(root, group, bench, "new", "estimates.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] / 1000.0  # ns -> µs
    parse, guard, cached = median("parse_only"), median("guard_check"), median("guard_cached")
    if parse is not None and guard is not None:
        rows.append((group, parse, guard, cached))
    shared, own = median("shared"), median("per_thread")
    if shared is not None and own is not None:
        contention = (shared, own)
print(f"{'query':<24} {'parse µs':>10} {'guard µs':>10} {'ratio':>7} {'cached µs':>10} {'ratio':>7}")
for group, parse, guard, cached in rows:
    line = f"{group:<24} {parse:>10.2f} {guard:>10.2f} {guard / parse:>6.2f}x"
    if cached is not None:
        line += f" {cached:>10.3f} {cached / parse:>6.3f}x"
    print(line)
if "contention" in dir():
    print(f"cache hits, 2 threads: shared {contention[0]:.2f} µs, per-thread {contention[1]:.2f} µs per lookup (each thread)")
PY
