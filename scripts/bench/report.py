#!/usr/bin/env python3
"""Helpers of scripts/bench.sh (Python standard library only).

  report.py metric URL NAME [LABEL=VALUE ...]   sum of a Prometheus metric's samples
  report.py sysbench FILE                       one sysbench run as JSON (QPS, percentiles)
  report.py report DIR                          results.md / .json / .tsv from DIR's runs

`report` reads DIR/manifest.tsv (one line per measured sysbench run, written
by bench.sh), DIR/raw/* (sysbench's output), DIR/machine.json and
DIR/memory.json, prints the tables and writes DIR/results.{md,json,tsv}.
Exit status: 0 when every run was clean (a FAIL against a performance target
is reported, not an error), 1 when a run is unusable.
"""

import json
import math
import os
import re
import statistics
import sys
import urllib.request

TARGETS = ("direct", "haproxy", "sqlguard")
TARGET_NAMES = {"direct": "direct", "haproxy": "HAProxy", "sqlguard": "sqlguard"}

# The issue's targets. Each names the cell(s) it reads.
QPS_VS_HAPROXY = 0.9      # 8-thread point select, text and prepared
P95_SLACK_MS = 0.050      # 1-thread point select: sqlguard p95 <= HAProxy p95 + 50 µs
QPS_VS_DIRECT_BOT = 0.85  # Clawdbot workload
RSS_IDLE_MIB = 30
RSS_1000_MIB = 100
STREAM_GROWTH_MIB = 32


def metric(url, name, filters):
    """Sum of the samples of metric `name` whose labels match `filters`."""
    wanted = dict(f.split("=", 1) for f in filters)
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        m = line_re.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(label_re.findall(m.group(3) or ""))
        if all(labels.get(k) == v for k, v in wanted.items()):
            total += float(m.group(4))
    return total


def parse_sysbench(path):
    """QPS, events, errors and the latency histogram of one sysbench run."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()

    def number(pattern):
        m = re.search(pattern, text, re.MULTILINE)
        return float(m.group(1)) if m else None

    run = {
        "queries": number(r"^\s+queries:\s+(\d+)"),
        "qps": number(r"^\s+queries:\s+\d+\s+\(([\d.]+) per sec\.\)"),
        "events": number(r"^\s+total number of events:\s+(\d+)"),
        "time_s": number(r"^\s+total time:\s+([\d.]+)s"),
        "errors": number(r"^\s+ignored errors:\s+(\d+)"),
        "reconnects": number(r"^\s+reconnects:\s+(\d+)"),
    }
    # sysbench --histogram: "   value |****   count", value in ms at the
    # centre of a logarithmic bucket 1.8 % wide (1024 buckets, 1 µs..100 s).
    buckets = []
    in_histogram = False
    for line in text.splitlines():
        if line.startswith("Latency histogram"):
            in_histogram = True
            continue
        if in_histogram:
            m = re.match(r"^\s+([\d.]+)\s+\|\**\s+(\d+)\s*$", line)
            if m:
                buckets.append((float(m.group(1)), int(m.group(2))))
            elif buckets:
                break
    run["histogram"] = buckets
    for p in (50, 95, 99):
        run[f"p{p}_ms"] = percentile(buckets, p)
    missing = [k for k in ("queries", "qps", "events", "errors") if run[k] is None]
    if missing or not buckets:
        raise ValueError(f"{path}: not a complete sysbench report (missing {missing or 'histogram'})")
    return run


def percentile(buckets, p):
    """The bucket value at which the cumulative count reaches p % (as sysbench does)."""
    total = sum(c for _, c in buckets)
    if total == 0:
        return None
    rank = math.floor(total * p / 100 + 0.5)
    seen = 0
    for value, count in buckets:
        seen += count
        if seen >= rank:
            return value
    return buckets[-1][0]


def read_manifest(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    return rows


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cell_key(row):
    return (row["workload"], int(row["threads"]), row["mode"])


def summarize(dirname):
    manifest = read_manifest(os.path.join(dirname, "manifest.tsv"))
    problems = []
    cells = {}
    for row in manifest:
        run = parse_sysbench(os.path.join(dirname, "raw", row["file"]))
        if row["rc"] != "0":
            problems.append(f"{row['file']}: sysbench exited {row['rc']}")
        if run["errors"]:
            problems.append(f"{row['file']}: {int(run['errors'])} statements failed")
        if row["target"] == "sqlguard":
            if float(row["denied"]) or float(row["failed"]):
                problems.append(
                    f"{row['file']}: sqlguard denied {row['denied']} and failed {row['failed']} statements"
                )
            # Audit ON: every statement sysbench counted has its record.
            if float(row["audited"]) < run["queries"]:
                problems.append(
                    f"{row['file']}: {row['audited']} audit records for {int(run['queries'])} statements"
                )
        run.update(target=row["target"], round=int(row["round"]), file=row["file"],
                   load1=row.get("load1"), audited=row.get("audited"))
        cells.setdefault(cell_key(row), {}).setdefault(row["target"], []).append(run)

    summary = []
    for (workload, threads, mode), by_target in cells.items():
        entry = {"workload": workload, "threads": threads, "mode": mode, "targets": {}}
        for target in TARGETS:
            runs = by_target.get(target, [])
            qps = [r["qps"] for r in runs]
            entry["targets"][target] = {
                "rounds": len(runs),
                "qps": median(qps),
                "qps_min": min(qps) if qps else None,
                "qps_max": max(qps) if qps else None,
                "p50_ms": median([r["p50_ms"] for r in runs]),
                "p95_ms": median([r["p95_ms"] for r in runs]),
                "p99_ms": median([r["p99_ms"] for r in runs]),
                "queries": sum(r["queries"] for r in runs),
            }
        t = entry["targets"]

        def ratio(a, b):
            return t[a]["qps"] / t[b]["qps"] if t[a]["qps"] and t[b]["qps"] else None

        entry["sqlguard_vs_haproxy"] = ratio("sqlguard", "haproxy")
        entry["sqlguard_vs_direct"] = ratio("sqlguard", "direct")
        if t["sqlguard"]["p95_ms"] is not None and t["haproxy"]["p95_ms"] is not None:
            entry["p95_delta_vs_haproxy_ms"] = t["sqlguard"]["p95_ms"] - t["haproxy"]["p95_ms"]
        else:
            entry["p95_delta_vs_haproxy_ms"] = None
        summary.append(entry)
    return summary, problems


def verdicts(summary, memory):
    """Each target of issue 6 with its measured value and PASS/FAIL."""
    out = []

    def find(workload, threads, mode):
        for e in summary:
            if (e["workload"], e["threads"], e["mode"]) == (workload, threads, mode):
                return e
        return None

    for mode in ("text", "prepared"):
        e = find("point_select", 8, mode)
        if e and e["sqlguard_vs_haproxy"] is not None:
            v = e["sqlguard_vs_haproxy"]
            out.append((f"point_select 8 threads {mode}: sqlguard QPS >= {QPS_VS_HAPROXY} x HAProxy",
                        f"{v:.3f} x", v >= QPS_VS_HAPROXY))
    for mode in ("text", "prepared"):
        e = find("point_select", 1, mode)
        if e and e["p95_delta_vs_haproxy_ms"] is not None:
            d = e["p95_delta_vs_haproxy_ms"]
            out.append((f"point_select 1 thread {mode}: sqlguard p95 <= HAProxy p95 + 50 us",
                        f"{e['targets']['sqlguard']['p95_ms'] * 1000:.0f} us vs "
                        f"{e['targets']['haproxy']['p95_ms'] * 1000:.0f} us ({d * 1000:+.0f} us)",
                        d <= P95_SLACK_MS + 1e-9))
    for threads in (8, 1):
        e = find("clawdbot", threads, "text")
        if e and e["sqlguard_vs_direct"] is not None:
            v = e["sqlguard_vs_direct"]
            out.append((f"clawdbot {threads} thread{'s' if threads > 1 else ''}: sqlguard QPS >= {QPS_VS_DIRECT_BOT} x direct",
                        f"{v:.3f} x", v >= QPS_VS_DIRECT_BOT))
    if memory:
        if memory.get("idle_rss_kib") is not None:
            v = memory["idle_rss_kib"] / 1024
            out.append((f"RSS idle <= {RSS_IDLE_MIB} MiB", f"{v:.1f} MiB", v <= RSS_IDLE_MIB))
        if memory.get("rss_1000_kib") is not None:
            v = memory["rss_1000_kib"] / 1024
            out.append((f"RSS with {memory.get('idle_clients', 1000)} idle clients <= {RSS_1000_MIB} MiB",
                        f"{v:.1f} MiB", v <= RSS_1000_MIB))
        if memory.get("stream_growth_kib") is not None:
            v = memory["stream_growth_kib"] / 1024
            out.append((f"1,000,000-row stream: RSS growth <= {STREAM_GROWTH_MIB} MiB",
                        f"{v:.1f} MiB", v <= STREAM_GROWTH_MIB))
    return out


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def us(ms):
    return None if ms is None else ms * 1000


def render(summary, memory, machine, checks):
    lines = []
    m = machine
    lines.append("# sqlguard end-to-end benchmark")
    lines.append("")
    lines.append(f"- date: {m.get('date')}; commit {m.get('commit')}")
    lines.append(f"- machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('mem')} RAM, {m.get('kernel')}")
    lines.append(f"- load average before the run: {m.get('load_before')}; after: {m.get('load_after', '-')}")
    lines.append(f"- versions: {m.get('mariadb')}; {m.get('sysbench')}; {m.get('haproxy')}")
    lines.append(f"- command: `{m.get('command')}`: {m.get('rounds')} round(s) of {m.get('seconds')} s per target "
                 f"and cell (order rotated each round), after a {m.get('warmup')} s warm-up; "
                 f"sbtest1 has {m.get('table_size')} rows")
    lines.append("")
    lines.append("QPS is the median over rounds; sg/HAP and sg/direct are ratios of those medians.")
    lines.append("")
    lines.append("| workload | threads | mode | direct QPS | HAProxy QPS | sqlguard QPS | sg/HAP | sg/direct |")
    lines.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for e in summary:
        t = e["targets"]
        lines.append(
            f"| {e['workload']} | {e['threads']} | {e['mode']} | "
            f"{fmt(t['direct']['qps'], ',.0f')} | {fmt(t['haproxy']['qps'], ',.0f')} | "
            f"{fmt(t['sqlguard']['qps'], ',.0f')} | {fmt(e['sqlguard_vs_haproxy'], '.3f')} | "
            f"{fmt(e['sqlguard_vs_direct'], '.3f')} |"
        )
    lines.append("")
    lines.append("Latency of one event in µs, p50 / p95 / p99 (median over rounds; an event is one statement,")
    lines.append("except read_only: one transaction of 16 statements). From sysbench's histogram (buckets 1.8 % wide).")
    lines.append("")
    lines.append("| workload | threads | mode | direct | HAProxy | sqlguard | sg p95 - HAP p95 |")
    lines.append("|---|---:|---|---:|---:|---:|---:|")
    for e in summary:
        t = e["targets"]
        cols = []
        for target in TARGETS:
            x = t[target]
            cols.append(f"{fmt(us(x['p50_ms']), '.0f')} / {fmt(us(x['p95_ms']), '.0f')} / {fmt(us(x['p99_ms']), '.0f')}")
        lines.append(
            f"| {e['workload']} | {e['threads']} | {e['mode']} | {' | '.join(cols)} | "
            f"{fmt(us(e['p95_delta_vs_haproxy_ms']), '+.0f')} |"
        )
    if memory:
        lines.append("")
        lines.append("Memory of the sqlguard process (VmRSS / VmHWM from /proc):")
        lines.append("")
        lines.append(f"- idle, after start and one query: {fmt(kib_mib(memory.get('idle_rss_kib')), '.1f')} MiB")
        lines.append(f"- {memory.get('idle_clients', 1000)} idle clients connected "
                     f"(sqlguard_client_connections = {memory.get('clients_seen', '-')}): "
                     f"{fmt(kib_mib(memory.get('rss_1000_kib')), '.1f')} MiB")
        lines.append(f"- streaming {memory.get('stream_rows', '-')} rows: peak {fmt(kib_mib(memory.get('stream_hwm_kib')), '.1f')} MiB "
                     f"from {fmt(kib_mib(memory.get('stream_rss_before_kib')), '.1f')} MiB, "
                     f"growth {fmt(kib_mib(memory.get('stream_growth_kib')), '.1f')} MiB ({memory.get('stream_ms', '-')} ms)")
    lines.append("")
    lines.append("| target | measured | result |")
    lines.append("|---|---|---|")
    for name, measured, ok in checks:
        lines.append(f"| {name} | {measured} | {'PASS' if ok else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def kib_mib(kib):
    return None if kib is None else kib / 1024


def write_tsv(path, summary):
    with open(path, "w", encoding="utf-8") as f:
        f.write("workload\tthreads\tmode\ttarget\tqps\tp50_us\tp95_us\tp99_us\trounds\n")
        for e in summary:
            for target in TARGETS:
                x = e["targets"][target]
                f.write(
                    f"{e['workload']}\t{e['threads']}\t{e['mode']}\t{target}\t{fmt(x['qps'], '.1f', '')}\t"
                    f"{fmt(us(x['p50_ms']), '.0f', '')}\t{fmt(us(x['p95_ms']), '.0f', '')}\t"
                    f"{fmt(us(x['p99_ms']), '.0f', '')}\t{x['rounds']}\n"
                )


def load_json(path):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def report(dirname):
    machine = load_json(os.path.join(dirname, "machine.json"))
    memory = load_json(os.path.join(dirname, "memory.json"))
    summary, problems = summarize(dirname)
    checks = verdicts(summary, memory)
    text = render(summary, memory, machine, checks)
    if problems:
        text += "\nUNUSABLE RUNS (these figures do not count):\n" + "".join(f"- {p}\n" for p in problems)
    with open(os.path.join(dirname, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    write_tsv(os.path.join(dirname, "results.tsv"), summary)
    with open(os.path.join(dirname, "results.json"), "w", encoding="utf-8") as f:
        json.dump({
            "machine": machine,
            "cells": summary,
            "memory": memory,
            "targets": [{"target": n, "measured": v, "pass": ok} for n, v, ok in checks],
            "problems": problems,
        }, f, indent=2)
        f.write("\n")
    sys.stdout.write(text)
    return 1 if problems else 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "metric":
        print(f"{metric(argv[2], argv[3], argv[4:]):.0f}")
        return 0
    if len(argv) == 3 and argv[1] == "sysbench":
        run = parse_sysbench(argv[2])
        run.pop("histogram")
        print(json.dumps(run))
        return 0
    if len(argv) == 3 and argv[1] == "report":
        return report(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
