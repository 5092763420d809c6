#!/usr/bin/env bash
# Runs benches/guard.rs and prints, per seed query, the median time of parsing
# alone and of the whole guard (guard::check), and their ratio.
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
    parse, guard = median("parse_only"), median("guard_check")
    if parse is not None and guard is not None:
        rows.append((group, parse, guard))
print(f"{'query':<24} {'parse µs':>10} {'guard µs':>10} {'ratio':>7}")
for group, parse, guard in rows:
    print(f"{group:<24} {parse:>10.2f} {guard:>10.2f} {guard / parse:>6.1f}x")
PY
