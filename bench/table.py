#!/usr/bin/env python3
"""Prints a Markdown table of bench/results/*.json, one row per scenario and size, one column
per system (tsung.json: medians over its runs, per generator and rate).

Rows of runs with placements (pinned / unpinned) and chat shapes (pairs / oneway) are grouped
by them; rows without those fields (the run of 2026-11-23 in results/before-2026-11-23/) were
pinned and pairs, and render as they did then.

Usage: python3 bench/table.py [results_dir] [--steps]
  --steps  also print every chat step (offered, achieved, latency, CPU, CPU-µs per message)
"""
import json, os, re, sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
show_steps = "--steps" in sys.argv[1:]
d = args[0] if args else os.path.join(os.path.dirname(__file__), "results")
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


def placements(rows):
    """The placements present, pinned first; [None] for rows that have none."""
    found = {r.get("placement") for r in rows}
    order = [p for p in ["pinned", "unpinned"] if p in found]
    order += sorted(p for p in found if p not in order and p is not None)
    return order + ([None] if None in found else [])


def tag(*parts):
    """' (a, b)' for the parts that are set, '' when none is."""
    parts = [p for p in parts if p]
    return f" ({', '.join(parts)})" if parts else ""


def shape_of(r):
    return r.get("shape") or "pairs"


lines = ["| scenario | metric | " + " | ".join(systems) + " |",
         "|---|---|" + "---|" * len(systems)]


def add(label, metric, rows_by_sys, key, unit=""):
    vals = [rows_by_sys.get(s, {}).get(key) for s in systems]
    lines.append(f"| {label} | {metric} | " + " | ".join(fmt(v, unit) for v in vals) + " |")


def add_vals(label, metric, vals):
    lines.append(f"| {label} | {metric} | " + " | ".join(vals) + " |")


# TLS: what every system negotiated with loadgen (any row that recorded it).
tls = {}
for name in ["login", "chat", "idle", "fanout", "storm", "isolation"]:
    for r in load(name):
        if r.get("tls_version") and r["system"] not in tls:
            tls[r["system"]] = f"{r['tls_version']} {r.get('tls_cipher') or '?'}"
if tls:
    add_vals("TLS (loadgen)", "version cipher suite", [tls.get(s, "–") for s in systems])

idle = load("idle")
for pl in placements(idle):
    for n in sorted({r["sessions"] for r in idle if r.get("placement") == pl}):
        rows = {r["system"]: r for r in idle if r["sessions"] == n and r.get("placement") == pl}
        add(f"idle {n}{tag(pl)}", "server RSS bytes/session", rows, "rss_bytes_per_session")

login_all = load("login")
for kind in ["login", "reconnect"]:
    login = [r for r in login_all if r["scenario"] == kind]
    for pl in placements(login):
        for n in sorted({r["sessions"] for r in login if r.get("placement") == pl}):
            rows = {r["system"]: r for r in login if r["sessions"] == n and r.get("placement") == pl}
            label = f"{kind} {n}{tag(pl)}"
            add(label, "logins/s", rows, "msgs_per_sec")
            add(label, "login p99 ms", rows, "p99_ms")
            add(label, "failed", rows, "lost")
            add(label, "generator CPU %", rows, "generator_cpu_pct")
            if any(r.get("generator_cpu_pct_each") for r in rows.values()):
                add_vals(label, "generator CPU % of each process", [
                    " + ".join(fmt(v) for v in rows[s]["generator_cpu_pct_each"])
                    if s in rows and rows[s].get("generator_cpu_pct_each") else "–" for s in systems])
            add(label, "server CPU %", rows, "server_cpu_pct")


def median_row(rows, key):
    """The row whose `key` is the median of `rows` (lower middle for an even count)."""
    rows = sorted((r for r in rows if r.get(key) is not None), key=lambda r: r[key])
    return rows[(len(rows) - 1) // 2] if rows else None


def is_peak(r):
    return (r.get("note") or "").startswith("peak")


for name in ["chat", "chat-cross-node"]:
    rows_all = load(name)
    groups = []
    for shape in ["pairs", "oneway"]:
        for pl in placements(rows_all):
            mine = [r for r in rows_all if shape_of(r) == shape and r.get("placement") == pl]
            if mine:
                groups.append((shape, pl, mine))
    for shape, pl, rows in groups:
        # Old rows have neither field: keep their labels as they were.
        new_style = any(r.get("shape") or r.get("placement") for r in rows)
        gtag = tag(shape, pl) if new_style else ""
        peak_runs = {}
        peaks = {}
        for s_ in systems:
            mine = [r for r in rows if is_peak(r) and r["system"] == s_]
            if mine:
                peaks[s_] = median_row(mine, "msgs_per_sec") or mine[-1]
                peak_runs[s_] = [r.get("msgs_per_sec") for r in mine]
        if not peaks:
            continue
        runs = max(len(v) for v in peak_runs.values())
        lines.append(f"| {name}{gtag} | peak of each run (msgs/s) | " + " | ".join(
            ", ".join(fmt(v) for v in peak_runs.get(s_, [])) or "–" for s_ in systems) + " |")
        label = f"{name}{gtag}"
        if runs > 1:
            label = f"{label} (median of {runs} runs)"
        n = max(r["sessions"] for r in peaks.values())
        label = f"{label} {n} sessions"
        add(label, "peak msgs/s (p99 ≤ 100 ms, none lost)" if not new_style
            else "peak msgs/s (p99 < 100 ms, none lost)", peaks, "msgs_per_sec")
        add_vals(label, "p50 / p99 ms at peak", [
            f"{fmt(peaks[s]['p50_ms'])} / {fmt(peaks[s]['p99_ms'])}"
            if s in peaks and peaks[s].get("p99_ms") is not None else "–" for s in systems])
        add(label, "server CPU % at peak", peaks, "server_cpu_pct")
        if new_style:
            add(label, "server CPU-µs per delivered msg at peak", peaks, "server_cpu_us_per_msg")
            # The busiest step of the median run's system: shows whether a server used more
            # than one core (unpinned), whatever the step's outcome.
            busiest = {}
            for s_ in systems:
                steps = [r for r in rows if r["system"] == s_ and not is_peak(r)
                         and r.get("server_cpu_pct") is not None]
                if steps:
                    busiest[s_] = max(steps, key=lambda r: r["server_cpu_pct"])
            add_vals(label, "highest server CPU % of any step (at msgs/s offered)", [
                f"{fmt(busiest[s]['server_cpu_pct'])} (at {fmt(busiest[s].get('offered_rate'))})"
                if s in busiest else "–" for s in systems])
        add(label, "generator CPU % at peak", peaks, "generator_cpu_pct")

# Control-plane isolation (Herald cluster).
iso = [r for r in load("isolation") if r.get("isolation")]
for r in iso:
    i = r["isolation"]
    label = f"isolation{tag(r.get('placement'))}, 3 nodes"
    def h(v):
        return [v] + ["–"] * (len(systems) - 1)
    add_vals(label, "chat offered / achieved msgs/s",
             h(f"{fmt(r.get('offered_rate'))} / {fmt(r.get('msgs_per_sec'))}"))
    add_vals(label, "chat p99 ms / lost", h(f"{fmt(r.get('p99_ms'))} / {fmt(r.get('lost'))}"))
    add_vals(label, "`cluster status` p99 / max ms (calls, failed)",
             h(f"{fmt(i['status_p99_ms'])} / {fmt(i['status_max_ms'])} "
               f"({i['status_calls']}, {i['status_failed']})"))
    for c in i["counters"]:
        per = ", ".join("n/e" if v is None else fmt(int(v) if v == int(v) else v)
                        for v in c["per_node"])
        total = "not exported" if c["total"] is None else \
            f"{fmt(int(c['total']) if c['total'] == int(c['total']) else c['total'])} (per node {per})"
        add_vals(label, f"Δ {c['name']}", h(total))

fanout = load("fanout")
for pl in placements(fanout):
    for size in sorted({r["sessions"] for r in fanout if r.get("placement") == pl}):
        fan = {r["system"]: r for r in fanout if r.get("placement") == pl and r["sessions"] == size}
        n = size - 1
        label = f"fanout {n} watchers{tag(pl)}"
        add(label, "delivery p50 ms", fan, "p50_ms")
        add(label, "delivery p99 ms", fan, "p99_ms")
        if any(r.get("generator_lag_p99_ms") is not None for r in fan.values()):
            # Latency is stamped with the kernel's receive time; the generator's own lag beside it.
            add(label, "generator lag p99 ms", fan, "generator_lag_p99_ms")
        add(label, "deliveries/s", fan, "msgs_per_sec")
        add(label, "lost deliveries", fan, "lost")
        add(label, "server CPU %", fan, "server_cpu_pct")
        add(label, "server CPU-µs/delivery", fan, "server_cpu_us_per_msg")
        vals = []
        for s in systems:
            note = fan.get(s, {}).get("note") or ""
            m = note.split("had a round: ")
            vals.append(m[1].split(" over")[0].replace(", max", "; max") if len(m) > 1 else "–")
        add_vals(label, "all watchers had it", vals)

storm = load("storm")
for pl in placements(storm):
    for size in sorted({r["sessions"] for r in storm if r.get("placement") == pl}):
        st = {r["system"]: r for r in storm if r.get("placement") == pl and r["sessions"] == size}
        label = f"storm {size} users{tag(pl)}"
        add(label, "offered deliveries/s", st, "offered_rate")
        add(label, "deliveries/s", st, "msgs_per_sec")
        add(label, "delivery p50 ms", st, "p50_ms")
        add(label, "delivery p99 ms", st, "p99_ms")
        add(label, "generator lag p99 ms", st, "generator_lag_p99_ms")
        add(label, "lost deliveries", st, "lost")
        add(label, "server CPU %", st, "server_cpu_pct")
        add(label, "server CPU-µs/delivery", st, "server_cpu_us_per_msg")

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
        add_vals(label, "p50 / p99 ms", vals)
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
    add_vals(f"tsung login (SASL PLAIN, 100 arrivals/s; median of {runs})", "p50 / p99 ms", vals)


# Idle: least-squares line through (sessions, server RSS after the hold) per system and
# placement; its slope is the memory one more idle session costs, and 24 GiB over it the
# sessions a node holds.
def idle_points(system, placement):
    pts = []
    for r in idle:
        m = re.search(r"VmRSS (\d+) -> (\d+)", r.get("note") or "")
        if r["system"] == system and r.get("placement") == placement and m and r["sessions"]:
            pts.append((r["sessions"], int(m.group(2))))
    return pts


for pl in placements(idle):
    fit = {}
    for s_ in systems:
        pts = idle_points(s_, pl)
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
        label = "idle (fit" + (f", {pl})" if pl else ")")
        add_vals(label, "RSS = a + b·sessions: b bytes/session",
                 [fmt(fit[s_]["slope"]) if s_ in fit else "–" for s_ in systems])
        add_vals(label, "largest deviation of a point from the line",
                 [f"{100 * fit[s_]['worst']:.1f} %" if s_ in fit else "–" for s_ in systems])
        add_vals(label, "sessions a 24 GiB node holds (projected)",
                 [f"{fit[s_]['proj']:,.0f}" if s_ in fit else "–" for s_ in systems])
print("\n".join(lines))

# Every chat step (--steps): the CPU cost per message at each rate, pass or fail.
if show_steps:
    out = ["", "| system | scenario | shape | placement | offered msgs/s | achieved | p50 / p99 ms "
           "| lost | server CPU % | server CPU-µs/msg | generator CPU % | TLS | step |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ["chat", "chat-cross-node"]:
        for r in load(name):
            if is_peak(r):
                continue
            out.append("| " + " | ".join([
                r["system"], name, shape_of(r), r.get("placement") or "pinned",
                fmt(r.get("offered_rate")), fmt(r.get("msgs_per_sec")),
                f"{fmt(r.get('p50_ms'))} / {fmt(r.get('p99_ms'))}", fmt(r.get("lost")),
                fmt(r.get("server_cpu_pct")), fmt(r.get("server_cpu_us_per_msg")),
                fmt(r.get("generator_cpu_pct")),
                f"{r['tls_version']} {r.get('tls_cipher') or ''}".strip() if r.get("tls_version") else "–",
                (r.get("note") or "").replace("step: ", "")]) + " |")
    print("\n".join(out))
