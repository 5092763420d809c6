#!/usr/bin/env bash
# Measures the figures of issue 2's closing note on this machine:
#  1. a 1,000-statement point-SELECT loop from one client, direct vs through sqlguard;
#  2. sqlguard's peak RSS while it streams a 1,000,000-row result.
# Usage: bash scripts/measure-proxy.sh   (needs mariadbd installed; builds in release mode)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin sqlguard --example measure_client
BIN=target/release/sqlguard
CLIENT=target/release/examples/measure_client
PORT=${PORT:-13399}
LOG=$(mktemp)
"$BIN" demo --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 300); do
  grep -q "demo is ready" "$LOG" && break
  kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
DBPORT=$(grep -o 'unguarded, root without password) is on 127.0.0.1:[0-9]*' "$LOG" | grep -o '[0-9]*$')
DIRECT="mysql://root@127.0.0.1:$DBPORT/shop"
PROXIED="mysql://clawdbot:meyram-demo@127.0.0.1:$PORT/shop"
# The read-only user's policy allows LIMIT up to 1,000,000 (the bot's stops at 100).
READER="mysql://readonly:reader-demo@127.0.0.1:$PORT/shop"
echo "== 1,000 point SELECTs, one client (best of 3)"
for i in 1 2 3; do echo -n "direct:  "; "$CLIENT" loop "$DIRECT" 1000; done
for i in 1 2 3; do echo -n "proxied: "; "$CLIENT" loop "$PROXIED" 1000; done
echo "== streaming 1,000,000 rows through sqlguard"
echo -n "RSS before: "; grep VmRSS /proc/$PID/status | tr -s ' '
"$CLIENT" stream "$READER" "${STREAM_SQL:-SELECT a.id, b.id, a.c FROM bench_points a JOIN bench_points b JOIN bench_points c LIMIT 1000000}"
echo -n "peak RSS (VmHWM) of sqlguard: "; grep VmHWM /proc/$PID/status | tr -s ' '
