#!/usr/bin/env python3
"""Prints a Markdown table of bench/results/*.json, one row per scenario and size, one column
per system (tsung.json: medians over its runs, per generator and rate).
Usage: python3 bench/table.py [results_dir]"""
import json, os, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
systems = ["herald", "prosody", "ejabberd"]

def load(name):
    p = os.path.join(d, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else []

def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.2f}{unit}"

lines = ["| scenario | metric | " + " | ".join(systems) + " |",
         "|---|---|" + "---|" * len(systems)]

def add(label, metric, rows_by_sys, key, unit=""):
    vals = [rows_by_sys.get(s, {}).get(key) for s in systems]
    lines.append(f"| {label} | {metric} | " + " | ".join(fmt(v, unit) for v in vals) + " |")

for n in sorted({r["sessions"] for r in load("idle")}):
    rows = {r["system"]: r for r in load("idle") if r["sessions"] == n}
    add(f"idle {n}", "server RSS bytes/session", rows, "rss_bytes_per_session")
for n in sorted({r["sessions"] for r in load("login")}):
    rows = {r["system"]: r for r in load("login") if r["sessions"] == n}
    add(f"login {n}", "logins/s", rows, "msgs_per_sec")
    add(f"login {n}", "login p99 ms", rows, "p99_ms")
    add(f"login {n}", "failed", rows, "lost")
    add(f"login {n}", "generator CPU %", rows, "generator_cpu_pct")
    add(f"login {n}", "server CPU %", rows, "server_cpu_pct")
def median_row(rows, key):
    """The row whose `key` is the median of `rows` (lower middle for an even count)."""
    rows = sorted((r for r in rows if r.get(key) is not None), key=lambda r: r[key])
    return rows[(len(rows) - 1) // 2] if rows else None

peak_runs = {}
for name in ["chat", "chat-cross-node"]:
    all_peaks = [r for r in load(name) if (r.get("note") or "").startswith("peak")]
    peaks = {}
    for s_ in systems:
        mine = [r for r in all_peaks if r["system"] == s_]
        if mine:
            peaks[s_] = median_row(mine, "msgs_per_sec") or mine[-1]
            peak_runs[(name, s_)] = [r.get("msgs_per_sec") for r in mine]
    if peaks:
        runs = max(len(v) for (nm, _), v in peak_runs.items() if nm == name)
        lines.append(f"| {name} | peak of each run (msgs/s) | " + " | ".join(
            ", ".join(fmt(v) for v in peak_runs.get((name, s_), [])) or "–" for s_ in systems) + " |")
        if runs > 1:
            name = f"{name} (median of {runs} runs)"
        n = max(r["sessions"] for r in peaks.values())
        add(f"{name} {n} sessions", "peak msgs/s (p99 ≤ 100 ms, none lost)", peaks, "msgs_per_sec")
        vals = []
        for s in systems:
            r = peaks.get(s)
            vals.append(f"{fmt(r['p50_ms'])} / {fmt(r['p99_ms'])}" if r and r.get("p99_ms") is not None else "–")
        lines.append(f"| {name} {n} sessions | p50 / p99 ms at peak | " + " | ".join(vals) + " |")
        add(f"{name} {n} sessions", "server CPU % at peak", peaks, "server_cpu_pct")
        add(f"{name} {n} sessions", "generator CPU % at peak", peaks, "generator_cpu_pct")
fan = {r["system"]: r for r in load("fanout")}
if fan:
    n = max(r["sessions"] for r in fan.values()) - 1
    add(f"fanout {n} watchers", "delivery p50 ms", fan, "p50_ms")
    add(f"fanout {n} watchers", "delivery p99 ms", fan, "p99_ms")
    add(f"fanout {n} watchers", "deliveries/s", fan, "msgs_per_sec")
    add(f"fanout {n} watchers", "lost deliveries", fan, "lost")
    add(f"fanout {n} watchers", "server CPU %", fan, "server_cpu_pct")
    vals = []
    for s in systems:
        note = fan.get(s, {}).get("note") or ""
        m = note.split("had a round: ")
        vals.append(m[1].split(" over")[0].replace(", max", "; max") if len(m) > 1 else "–")
    lines.append(f"| fanout {n} watchers | all watchers had it | " + " | ".join(vals) + " |")
# Tsung cross-check (results/tsung.json): both generators at the same fixed rate on the same
# server process; medians over the runs in the file, the run count in the label.
tsung = load("tsung")
def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    v = xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2
    return int(v) if all(isinstance(x, int) for x in xs) and v == int(v) else v
for rate in sorted({r.get("offered_rate") for r in tsung if r.get("offered_rate")}):
    for gen, scen in [("tsung", "tsung-chat"), ("loadgen", "chat")]:
        rows = [r for r in tsung if r["scenario"] == scen and r.get("offered_rate") == rate]
        if not rows:
            continue
        runs = max(sum(1 for r in rows if r["system"] == s) for s in systems)
        label = f"chat {rate:,.0f}/s, {gen} (median of {runs})"
        by = {s: [r for r in rows if r["system"] == s] for s in systems}
        vals = []
        for s in systems:
            p50 = median([r.get("p50_ms") for r in by[s]])
            p99 = median([r.get("p99_ms") for r in by[s]])
            vals.append(f"{fmt(p50)} / {fmt(p99)}" if p99 is not None else "–")
        lines.append(f"| {label} | p50 / p99 ms | " + " | ".join(vals) + " |")
        med = {s: {"msgs_per_sec": median([r.get("msgs_per_sec") for r in by[s]]),
                   "lost": median([r.get("lost") for r in by[s]]),
                   "generator_cpu_pct": median([r.get("generator_cpu_pct") for r in by[s]])}
               for s in systems}
        add(label, "msgs/s achieved", med, "msgs_per_sec")
        add(label, "lost", med, "lost")
        add(label, "generator CPU %", med, "generator_cpu_pct")
logins = [r for r in tsung if r["scenario"] == "tsung-login"]
if logins:
    by = {s: [r for r in logins if r["system"] == s] for s in systems}
    runs = max(len(v) for v in by.values())
    vals = []
    for s in systems:
        p50 = median([r.get("p50_ms") for r in by[s]])
        p99 = median([r.get("p99_ms") for r in by[s]])
        vals.append(f"{fmt(p50)} / {fmt(p99)}" if p99 is not None else "–")
    lines.append(f"| tsung login (SASL PLAIN, 100 arrivals/s; median of {runs}) | p50 / p99 ms | "
                 + " | ".join(vals) + " |")
# Idle: least-squares line through (sessions, server RSS after the hold) per system; its slope
# is the memory one more idle session costs, and 24 GiB over it the sessions a node holds.
import re
def idle_points(system):
    pts = []
    for r in load("idle"):
        m = re.search(r"VmRSS (\d+) -> (\d+)", r.get("note") or "")
        if r["system"] == system and m and r["sessions"]:
            pts.append((r["sessions"], int(m.group(2))))
    return pts
fit = {}
for s_ in systems:
    pts = idle_points(s_)
    if len(pts) >= 2:
        n = len(pts)
        mx = sum(x for x, _ in pts) / n
        my = sum(y for _, y in pts) / n
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None
        if slope:
            icpt = my - slope * mx
            worst = max(abs(y - (icpt + slope * x)) / y for x, y in pts)
            fit[s_] = {"slope": slope, "icpt": icpt, "worst": worst, "pts": pts,
                       "proj": (24 * 2**30 - icpt) / slope}
if fit:
    lines.append("| idle (fit) | RSS = a + b·sessions: b bytes/session | " + " | ".join(
        fmt(fit[s_]["slope"]) if s_ in fit else "–" for s_ in systems) + " |")
    lines.append("| idle (fit) | largest deviation of a point from the line | " + " | ".join(
        f"{100 * fit[s_]['worst']:.1f} %" if s_ in fit else "–" for s_ in systems) + " |")
    lines.append("| idle (fit) | sessions a 24 GiB node holds (projected) | " + " | ".join(
        f"{fit[s_]['proj']:,.0f}" if s_ in fit else "–" for s_ in systems) + " |")
print("\n".join(lines))
