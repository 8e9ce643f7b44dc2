#!/usr/bin/env python3
"""Prints a Markdown table of bench/results/*.json, one row per scenario and size, one column
per system, with the Herald / peer ratio. Usage: python3 bench/table.py [results_dir]"""
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
for name in ["chat", "chat-cross-node"]:
    peaks = {r["system"]: r for r in load(name) if (r.get("note") or "").startswith("peak")}
    if peaks:
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
print("\n".join(lines))
