#!/usr/bin/env bash
# End-to-end benchmark of sqlguard (issue 6), one command on a fresh machine:
#
#   bash scripts/bench.sh            full run (about 25 minutes on 2 cores)
#   bash scripts/bench.sh --quick    a few seconds per cell: a smoke test
#
# It installs what is missing (sysbench, haproxy, mariadb-server without its
# service, python3: Debian packages), builds sqlguard in release mode, starts
# a private MariaDB (temporary data dir, loopback, a free port), HAProxy in
# TCP passthrough in front of it, and sqlguard in front of it (audit log ON,
# metrics ON), then measures side by side, rotating the order of the three
# targets each round:
#   sysbench oltp_point_select and oltp_read_only, 1 and 8 threads, text and
#   prepared (--db-ps-mode=disable|auto), on sysbench's table sbtest1;
#   the Clawdbot workload (scripts/bench/clawdbot.lua) on the demo shop,
#   tenant-scoped, 1 and 8 threads;
#   sqlguard's memory: idle, with 1,000 idle clients, streaming 1,000,000 rows.
# It prints QPS, p50/p95/p99 latency and the ratios sqlguard/HAProxy and
# sqlguard/direct with PASS/FAIL against the issue's targets, and writes them
# to target/bench/results.{md,json,tsv} (raw sysbench output in raw/,
# sqlguard's metrics after the load in sqlguard-metrics.txt).
# It fails if any statement failed or was denied by sqlguard (sysbench's error
# count, sqlguard_denied_total, error decisions) or was not audited.
# Everything it starts is stopped on exit, Ctrl-C included.
#
# Options:
#   --quick           1 round of 3 s per target and cell, 1 s warm-up, 10,000-row table
#   --no-install      do not run apt-get; fail if a tool is missing
#   --rounds N        rounds per cell (default 3)
#   --time SECONDS    length of one measured run (default 15)
#   --warmup SECONDS  unmeasured run of each target before a cell (default 3)
#   --table-size N    rows in sbtest1 (default 100000)
#   --only LIST       comma-separated subset of point_select,read_only,clawdbot,memory
#   --out DIR         results directory (default target/bench)
#   --keep            keep the temporary directory (MariaDB data, logs, audit log)
#   --bin-dir DIR     use the sqlguard and examples/measure_client already built in
#                     DIR (e.g. another commit's target/release) instead of building
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="${ROOT}/scripts/bench"
COMMAND_LINE="bash scripts/bench.sh $*"

ROUNDS=3
SECONDS_PER_RUN=15
WARMUP=3
TABLE_SIZE=100000
ONLY="point_select,read_only,clawdbot,memory"
OUT="${ROOT}/target/bench"
INSTALL=1
KEEP=0
BIN_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; SECONDS_PER_RUN=3; WARMUP=1; TABLE_SIZE=10000 ;;
        --no-install) INSTALL=0 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --time) SECONDS_PER_RUN="$2"; shift ;;
        --warmup) WARMUP="$2"; shift ;;
        --table-size) TABLE_SIZE="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --keep) KEEP=1 ;;
        --bin-dir) BIN_DIR="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in "$ROUNDS" "$SECONDS_PER_RUN" "$WARMUP" "$TABLE_SIZE"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a number: $n" >&2; exit 2; }
done
# The memory phase's cross join needs 1,000 x 1,000 rows.
[ "$TABLE_SIZE" -ge 1000 ] || { echo "--table-size must be at least 1000" >&2; exit 2; }
wants() { [[ ",${ONLY}," == *",$1,"* ]]; }

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Installs a package without starting its service (policy-rc.d is honoured by
# invoke-rc.d and deb-systemd-invoke): the benchmark runs its own MariaDB and
# HAProxy, never the system's.
apt_install_no_service() {
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created=1
    fi
    apt_install "$@"
    if [ "$created" = 1 ]; then rm -f "$policy"; fi
}
have() { command -v "$1" >/dev/null 2>&1; }
MARIADBD=""
find_mariadbd() {
    local d
    for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
        if [ -x "$d/mariadbd" ]; then MARIADBD="$d/mariadbd"; return 0; fi
    done
    MARIADBD=$(command -v mariadbd 2>/dev/null) || return 1
}
need() {  # need COMMAND PACKAGE [no-service]
    have "$1" && return 0
    [ "$INSTALL" = 1 ] || die "$1 is missing: apt-get install $2 (or run without --no-install)"
    log "installing $2"
    if [ "${3:-}" = no-service ]; then apt_install_no_service "$2"; else apt_install "$2"; fi
    have "$1" || die "$1 still missing after installing $2"
}
if ! find_mariadbd || ! have mariadb-install-db; then
    [ "$INSTALL" = 1 ] || die "mariadbd is missing: apt-get install mariadb-server"
    log "installing mariadb-server (its service stays off)"
    apt_install_no_service mariadb-server
    find_mariadbd || die "mariadbd still missing after installing mariadb-server"
fi
need mariadb mariadb-client no-service
need sysbench sysbench
need haproxy haproxy no-service
need python3 python3
[ -n "$BIN_DIR" ] || have cargo || die "cargo not found: install the Rust toolchain (rustup)"

# ---------------------------------------------------------------- build
if [ -z "$BIN_DIR" ]; then
    log "building sqlguard (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin sqlguard --example measure_client)
    SQLGUARD="${ROOT}/target/release/sqlguard"
    CLIENT="${ROOT}/target/release/examples/measure_client"
else
    SQLGUARD="${BIN_DIR}/sqlguard"
    CLIENT="${BIN_DIR}/examples/measure_client"
fi
[ -x "$SQLGUARD" ] && [ -x "$CLIENT" ] || die "missing ${SQLGUARD} or ${CLIENT}"
REPORT=(python3 "${BENCH}/report.py")

# ---------------------------------------------------------------- state and cleanup
WORK=$(mktemp -d /tmp/sqlguard-bench.XXXXXX)
PIDS=()
DB_PID=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$DB_PID" ] && kill -0 "$DB_PID" 2>/dev/null; then
        kill "$DB_PID" 2>/dev/null || true
        # A clean InnoDB shutdown takes a few seconds; then it is killed.
        for _ in $(seq 1 100); do
            kill -0 "$DB_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$DB_PID" 2>/dev/null || true
        wait "$DB_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then
        echo "kept ${WORK}" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sessions pin one backend connection each, and the memory phase holds 1,000
# clients: sqlguard needs two descriptors per client, MariaDB one.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 4096 ] || die "open files limit $(ulimit -n) is too low for 1,000 clients (raise ulimit -n)"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for WHAT SECONDS PID COMMAND...: runs COMMAND until it succeeds; fails
# if PID exits or SECONDS pass.
wait_for() {
    local what="$1" seconds="$2" pid="$3"
    shift 3
    local deadline=$(($(date +%s) + seconds))
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready"
        [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready after ${seconds}s"
        sleep 0.2
    done
}

rm -rf "${OUT}/raw"
mkdir -p "${OUT}/raw"
rm -f "${OUT}"/results.* "${OUT}/manifest.tsv" "${OUT}/memory.json" "${OUT}/machine.json" \
    "${OUT}/sqlguard-metrics.txt"

# ---------------------------------------------------------------- machine
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="${COMMIT} (with uncommitted changes)"
fi
machine_json() {
    python3 - "$@" <<'PY'
import json, sys
keys = sys.argv[1::2]
values = sys.argv[2::2]
print(json.dumps(dict(zip(keys, values)), indent=2))
PY
}
log "machine: $(nproc) CPUs (${CPU_MODEL}), load ${LOAD_BEFORE}"

# ---------------------------------------------------------------- MariaDB
DB_PORT=$(free_port)
DB_ROOT_ARGS=()
[ "$(id -u)" = 0 ] && DB_ROOT_ARGS=(--user=root)  # mariadbd refuses root unless told
log "starting a private MariaDB on 127.0.0.1:${DB_PORT}"
mkdir -p "${WORK}/tmp"
mariadb-install-db --no-defaults --datadir="${WORK}/data" --tmpdir="${WORK}/tmp" \
    --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
    "${DB_ROOT_ARGS[@]}" >"${WORK}/install-db.log" 2>&1 \
    || { tail -n 20 "${WORK}/install-db.log" >&2; die "mariadb-install-db failed"; }
# A small production box: the whole data set in the buffer pool, connections
# for 1,000 pinned sessions plus the benchmark's own. The redo log is written
# at every commit and flushed to disk once a second (flush_log_at_trx_commit
# = 2, a common production choice: a crash of mariadbd loses nothing, one of
# the OS up to a second): with an fsync per commit, the Clawdbot workload's
# writes measured the disk of a shared VM (stalls of 100 ms), not the proxies.
"$MARIADBD" --no-defaults --datadir="${WORK}/data" --tmpdir="${WORK}/tmp" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --socket="${WORK}/mysqld.sock" \
    --pid-file="${WORK}/mariadbd.pid" --log-error="${WORK}/mariadbd.err" \
    --skip-name-resolve --skip-log-bin --performance-schema=OFF \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --max-connections=1200 --max-prepared-stmt-count=100000 \
    --innodb-buffer-pool-size=1G --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=2 \
    --table-open-cache=2000 --open-files-limit=8192 \
    "${DB_ROOT_ARGS[@]}" >"${WORK}/mariadbd.out" 2>&1 &
DB_PID=$!
SQL=(mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$DB_PORT" -u root)
wait_for "mariadbd (see ${WORK}/mariadbd.err)" 120 "$DB_PID" "${SQL[@]}" -e "SELECT 1"

BACKEND_PASSWORD="bench-backend-$$-${RANDOM}"
DIRECT_USER=bench
DIRECT_PASSWORD=bench-direct
log "loading the demo shop, the Clawdbot catalogue and sysbench's table (${TABLE_SIZE} rows)"
"${SQL[@]}" -e "CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
"${SQL[@]}" shop <"${ROOT}/fixtures/demo.sql"
"${SQL[@]}" shop <"${BENCH}/clawdbot-data.sql" >/dev/null
# sysbench's own table replaces the fixture's 1,000-row copy.
"${SQL[@]}" shop -e "DROP TABLE sbtest1"
sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$DB_PORT" \
    --mysql-user=root --mysql-db=shop --tables=1 --table-size="$TABLE_SIZE" prepare \
    >"${WORK}/sysbench-prepare.log" 2>&1 \
    || { tail -n 20 "${WORK}/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }
# sqlguard's backend account (what proxy.toml documents: SELECT, INSERT,
# UPDATE on shop) and the account direct and HAProxy clients use, with the
# same rights: sqlguard's guard is the only difference between the targets.
"${SQL[@]}" <<SQL
CREATE USER 'sqlguard'@'127.0.0.1' IDENTIFIED BY '${BACKEND_PASSWORD}';
GRANT SELECT, INSERT, UPDATE ON shop.* TO 'sqlguard'@'127.0.0.1';
CREATE USER '${DIRECT_USER}'@'127.0.0.1' IDENTIFIED BY '${DIRECT_PASSWORD}';
GRANT SELECT, INSERT, UPDATE ON shop.* TO '${DIRECT_USER}'@'127.0.0.1';
ANALYZE TABLE shop.sbtest1;
SQL

# ---------------------------------------------------------------- HAProxy
HAPROXY_PORT=$(free_port)
log "starting HAProxy (TCP passthrough) on 127.0.0.1:${HAPROXY_PORT}"
BENCH_HAPROXY_PORT="$HAPROXY_PORT" BENCH_DB_PORT="$DB_PORT" \
    haproxy -db -f "${BENCH}/haproxy.cfg" >"${WORK}/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_for "haproxy (see ${WORK}/haproxy.log)" 30 "$HAPROXY_PID" \
    mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$HAPROXY_PORT" \
    -u "$DIRECT_USER" -p"$DIRECT_PASSWORD" shop -e "SELECT 1"

# ---------------------------------------------------------------- sqlguard
SG_PORT=""
SG_PID=""
METRICS_URL=""
# start_sqlguard NAME: a fresh sqlguard with its own audit log and metrics port.
start_sqlguard() {
    local name="$1"
    SG_PORT=$(free_port)
    local metrics_port
    metrics_port=$(free_port)
    METRICS_URL="http://127.0.0.1:${metrics_port}/metrics"
    SQLGUARD_BACKEND_PASSWORD="$BACKEND_PASSWORD" SQLGUARD_LOG=warn \
        "$SQLGUARD" serve --config "${BENCH}/proxy.toml" \
        --listen "127.0.0.1:${SG_PORT}" \
        --backend-url "mysql://sqlguard@127.0.0.1:${DB_PORT}/shop" \
        --metrics-listen "127.0.0.1:${metrics_port}" \
        --audit-log "${WORK}/audit-${name}.log" \
        >"${WORK}/sqlguard-${name}.log" 2>&1 &
    SG_PID=$!
    PIDS+=("$SG_PID")
    wait_for "sqlguard (see ${WORK}/sqlguard-${name}.log)" 60 "$SG_PID" \
        python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://127.0.0.1:${metrics_port}/readyz"
}
stop_sqlguard() {
    kill "$SG_PID" 2>/dev/null || true
    wait "$SG_PID" 2>/dev/null || true
}
metric() { "${REPORT[@]}" metric "$METRICS_URL" "$@"; }
vm() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }

# ---------------------------------------------------------------- memory
if wants memory; then
    start_sqlguard memory
    SG_URL="mysql://sysbench:sysbench-bench@127.0.0.1:${SG_PORT}/shop"
    log "memory: idle sqlguard after one query"
    "$CLIENT" stream "$SG_URL" "SELECT c FROM sbtest1 WHERE id = 1" >/dev/null
    sleep 1
    IDLE_RSS=$(vm "$SG_PID" VmRSS)

    log "memory: streaming 1,000,000 rows"
    # Reset the peak (VmHWM) to the current RSS, so the peak after the stream
    # is the stream's own.
    echo 5 >"/proc/${SG_PID}/clear_refs"
    STREAM_BEFORE=$(vm "$SG_PID" VmRSS)
    STREAM_OUT=$("$CLIENT" stream "$SG_URL" \
        "SELECT a.id, b.id, a.c FROM sbtest1 a JOIN sbtest1 b LIMIT 1000000")
    STREAM_HWM=$(vm "$SG_PID" VmHWM)
    STREAM_ROWS=${STREAM_OUT%% rows*}
    STREAM_MS=$(sed -n 's/.* in \([0-9]*\) ms/\1/p' <<<"$STREAM_OUT")
    [ "$STREAM_ROWS" = 1000000 ] || die "the stream returned ${STREAM_OUT}, not 1000000 rows"

    IDLE_CLIENTS=1000
    log "memory: ${IDLE_CLIENTS} idle clients"
    # Bounded: the client exits by itself after 600 s if this script is gone.
    "$CLIENT" idle "$SG_URL" "$IDLE_CLIENTS" 600 >"${WORK}/idle.out" 2>&1 &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    wait_for "the idle clients (see ${WORK}/idle.out)" 300 "$IDLE_PID" grep -q '^ready' "${WORK}/idle.out"
    CLIENTS_SEEN=$(metric sqlguard_client_connections)
    [ "$CLIENTS_SEEN" -ge "$IDLE_CLIENTS" ] \
        || die "sqlguard counts ${CLIENTS_SEEN} clients, expected ${IDLE_CLIENTS}"
    sleep 1
    RSS_1000=$(vm "$SG_PID" VmRSS)
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    DENIED=$(metric sqlguard_denied_total)
    [ "$DENIED" = 0 ] || die "sqlguard denied ${DENIED} statements in the memory phase"
    stop_sqlguard
    machine_json idle_rss_kib "$IDLE_RSS" rss_1000_kib "$RSS_1000" idle_clients "$IDLE_CLIENTS" \
        clients_seen "$CLIENTS_SEEN" stream_rss_before_kib "$STREAM_BEFORE" \
        stream_hwm_kib "$STREAM_HWM" stream_growth_kib "$((STREAM_HWM - STREAM_BEFORE))" \
        stream_rows "$STREAM_ROWS" stream_ms "$STREAM_MS" >"${OUT}/memory.json.tmp"
    # Numbers as numbers.
    python3 - "${OUT}/memory.json.tmp" "${OUT}/memory.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
json.dump({k: int(v) if v.isdigit() else v for k, v in d.items()}, open(sys.argv[2], "w"), indent=2)
PY
    rm -f "${OUT}/memory.json.tmp"
    log "memory: idle $((IDLE_RSS / 1024)) MiB, ${IDLE_CLIENTS} clients $((RSS_1000 / 1024)) MiB, stream +$(((STREAM_HWM - STREAM_BEFORE) / 1024)) MiB"
fi

# ---------------------------------------------------------------- throughput and latency
start_sqlguard load
printf 'workload\tthreads\tmode\ttarget\tround\tfile\trc\tload1\taudited\tdenied\tfailed\n' >"${OUT}/manifest.tsv"
RUN_ID=0

# run_sysbench WORKLOAD THREADS MODE TARGET SECONDS OUTFILE: one sysbench run;
# returns sysbench's exit status.
run_sysbench() {
    local workload="$1" threads="$2" mode="$3" target="$4" seconds="$5" outfile="$6"
    local port user password form
    case "$target" in
        direct) port="$DB_PORT"; user="$DIRECT_USER"; password="$DIRECT_PASSWORD"; form=app ;;
        haproxy) port="$HAPROXY_PORT"; user="$DIRECT_USER"; password="$DIRECT_PASSWORD"; form=app ;;
        sqlguard)
            port="$SG_PORT"; form=bot
            if [ "$workload" = clawdbot ]; then
                user=clawdbot; password=meyram-demo
            else
                user=sysbench; password=sysbench-bench
            fi ;;
    esac
    local ps=disable
    [ "$mode" = prepared ] && ps=auto
    RUN_ID=$((RUN_ID + 1))
    local common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port"
        --mysql-user="$user" --mysql-password="$password" --mysql-db=shop
        --threads="$threads" --time="$seconds" --events=0 --report-interval=0
        --histogram=on --mysql-ignore-errors=none --db-ps-mode="$ps")
    local script=()
    case "$workload" in
        point_select) script=(oltp_point_select --tables=1 --table-size="$TABLE_SIZE") ;;
        read_only) script=(oltp_read_only --tables=1 --table-size="$TABLE_SIZE") ;;
        clawdbot) script=("${BENCH}/clawdbot.lua" --sql_form="$form" --run_id="$RUN_ID") ;;
    esac
    sysbench "${script[@]}" "${common[@]}" run >"$outfile" 2>&1
}

# measure WORKLOAD THREADS MODE: warm-up, then ROUNDS rounds of the three
# targets, each round starting with the next target (direct, HAProxy,
# sqlguard, then HAProxy, sqlguard, direct, ...).
measure() {
    local workload="$1" threads="$2" mode="$3"
    local targets=(direct haproxy sqlguard)
    local cell="${workload}-${threads}t-${mode}"
    [ "$WARMUP" -gt 0 ] && log "${cell}: warm-up ${WARMUP}s per target" || log "${cell}"
    local target
    if [ "$WARMUP" -gt 0 ]; then
        for target in "${targets[@]}"; do
            run_sysbench "$workload" "$threads" "$mode" "$target" "$WARMUP" "${WORK}/warmup.out" \
                || { cat "${WORK}/warmup.out" >&2; die "${cell}: warm-up on ${target} failed"; }
        done
    fi
    local round i
    for round in $(seq 1 "$ROUNDS"); do
        for i in 0 1 2; do
            target=${targets[$(((round - 1 + i) % 3))]}
            local file="${cell}-${target}-r${round}.txt"
            local load1 audit_before=0 denied_before=0 failed_before=0
            load1=$(cut -d' ' -f1 /proc/loadavg)
            if [ "$target" = sqlguard ]; then
                audit_before=$(metric sqlguard_audit_records_total)
                denied_before=$(metric sqlguard_denied_total)
                failed_before=$(metric sqlguard_queries_total decision=error)
            fi
            local rc=0
            run_sysbench "$workload" "$threads" "$mode" "$target" "$SECONDS_PER_RUN" "${OUT}/raw/${file}" || rc=$?
            local audited=0 denied=0 failed=0
            if [ "$target" = sqlguard ]; then
                # The audit writer may still be appending the run's last records.
                local queries
                queries=$(sed -n 's/^ *queries: *\([0-9]*\).*/\1/p' "${OUT}/raw/${file}")
                for _ in $(seq 1 50); do
                    audited=$(($(metric sqlguard_audit_records_total) - audit_before))
                    [ "$audited" -ge "${queries:-0}" ] && break
                    sleep 0.2
                done
                denied=$(($(metric sqlguard_denied_total) - denied_before))
                failed=$(($(metric sqlguard_queries_total decision=error) - failed_before))
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$threads" "$mode" \
                "$target" "$round" "$file" "$rc" "$load1" "$audited" "$denied" "$failed" \
                >>"${OUT}/manifest.tsv"
            local qps
            qps=$(sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec.)/\1/p' "${OUT}/raw/${file}")
            printf '    round %s %-8s %10s qps%s\n' "$round" "$target" "${qps:-?}" \
                "$([ "$target" = sqlguard ] && echo ", ${audited} audited, ${denied} denied, ${failed} failed")" >&2
            if [ "$rc" != 0 ] || [ "$denied" != 0 ] || [ "$failed" != 0 ]; then
                tail -n 30 "${OUT}/raw/${file}" >&2
                [ "$target" = sqlguard ] && "$SQLGUARD" audit --file "${WORK}/audit-load.log" --decision deny 2>&1 | tail -n 5 >&2
                die "${cell} on ${target} failed: sysbench exit ${rc}, ${denied} denied, ${failed} failed"
            fi
        done
    done
}

for workload in point_select read_only; do
    wants "$workload" || continue
    for threads in 1 8; do
        for mode in text prepared; do
            measure "$workload" "$threads" "$mode"
        done
    done
done
if wants clawdbot; then
    for threads in 1 8; do
        measure clawdbot "$threads" text
    done
fi
# sqlguard's own view of the load phase (guard and backend time histograms,
# decision-cache hits, audit records), for reading where its time goes.
python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())" \
    "$METRICS_URL" >"${OUT}/sqlguard-metrics.txt"
stop_sqlguard

# ---------------------------------------------------------------- report
machine_json date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" commit "$COMMIT" nproc "$(nproc)" \
    cpu "$CPU_MODEL" mem "$(free -h | awk '/^Mem:/ {print $2}')" kernel "$(uname -sr)" \
    load_before "$LOAD_BEFORE" load_after "$(cut -d' ' -f1-3 /proc/loadavg)" \
    mariadb "$("$MARIADBD" --version | sed 's/ for .*//')" \
    sysbench "$(sysbench --version)" haproxy "$(haproxy -v | head -n1 | sed 's/ - .*//')" \
    command "$COMMAND_LINE" rounds "$ROUNDS" seconds "$SECONDS_PER_RUN" warmup "$WARMUP" \
    table_size "$TABLE_SIZE" >"${OUT}/machine.json"
echo
"${REPORT[@]}" report "$OUT"
echo
echo "written: ${OUT}/results.md, results.json, results.tsv (raw sysbench output in ${OUT}/raw/)"
