#!/usr/bin/env python3
"""Turns one Tsung run of bench/tsung/chat.xml.in into result rows (stdlib only).

Reads the run's log directory (the `-l` directory given to tsung, or one of its
YYYYMMDD-HHMM subdirectories):
  - tsung-fullstats.log (backend="fullstats"): every sample tsung recorded, as Erlang terms:
    `{sample,xmpp_msg_latency,0.73}` (one per stamped message received, ms),
    `{sample,tr_login,55.4}` (one per transaction, ms) and `{sample,request,[...]}` lists;
  - tsung.log: the periodic `stats:` lines; only the counters of the last dump are used
    (`stats: NAME INTERVAL TOTAL`, e.g. request_noack, error_*, finish_users_count).

Appends two rows to --out (a JSON list, created when missing), in the row format of
bench/results/*.json: scenario "tsung-chat" (stamped chat latency, rate achieved) and
"tsung-login" (the login transaction of the same run). Every field's tsung source is named in
the row's note.

With --loadgen-json FILE (rows `loadgen chat` wrote for the same rate, same server process,
just before tsung), its step rows are appended too, scenario "chat", so both generators sit
side by side in one file.

Usage: summarize.py --log-dir DIR --system NAME --users N --rate R --think S --iterations K
                    [--loadgen-json FILE] [--out bench/results/tsung.json]
"""
import argparse
import datetime
import json
import math
import os
import re
import sys

# `{sample,NAME,NUMBER}`: one sample (ts_mon writes these for xmpp_msg_latency, tr_*, ...).
SAMPLE = re.compile(r"\{sample,([a-z][a-z0-9_]*),\s*(-?[0-9.]+(?:e[-+]?[0-9]+)?)\}")
# `{sample,NAME,[N1,N2,...]}`: a batch (ts_stats_mon writes request/connect/page like this).
SAMPLE_LIST = re.compile(r"\{sample,([a-z][a-z0-9_]*),\s*\[([^\]]*)\]\}")
# `stats: NAME INTERVAL TOTAL` (counters; sample lines have 8 fields and are not matched).
COUNTER = re.compile(r"^stats: ([a-z][a-z0-9_]*) (-?[0-9.]+) (-?[0-9.]+)$")


class SummaryError(Exception):
    """The log directory does not hold a usable tsung run."""


def find_run_dir(log_dir):
    """Returns the directory holding tsung.log: log_dir itself or its newest subdirectory."""
    if os.path.isfile(os.path.join(log_dir, "tsung.log")):
        return log_dir
    try:
        subs = sorted(
            d for d in os.listdir(log_dir)
            if os.path.isfile(os.path.join(log_dir, d, "tsung.log"))
        )
    except OSError as e:
        raise SummaryError(f"{log_dir}: {e}") from e
    if not subs:
        raise SummaryError(f"{log_dir}: no tsung.log in it or in a subdirectory")
    return os.path.join(log_dir, subs[-1])


def parse_fullstats(text):
    """Returns {name: [float samples]} from the text of tsung-fullstats.log."""
    out = {}
    for name, value in SAMPLE.findall(text):
        out.setdefault(name, []).append(float(value))
    for name, values in SAMPLE_LIST.findall(text):
        nums = [float(v) for v in values.replace("\n", " ").split(",") if v.strip()]
        out.setdefault(name, []).extend(nums)
    return out


def parse_counters(text):
    """Returns {name: total} from the last `# stats: dump` block of tsung.log."""
    blocks = text.split("# stats: dump at")
    totals = {}
    for line in blocks[-1].splitlines():
        m = COUNTER.match(line.strip())
        if m:
            totals[m.group(1)] = float(m.group(3))
    return totals


def percentile(sorted_values, q):
    """Nearest-rank percentile (as loadgen's report.rs), None when there is no sample."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = min(max(math.ceil(q * n), 1), n)
    return sorted_values[rank - 1]


def latency_fields(samples):
    """p50/p90/p99/max in ms (rounded to µs) from a list of ms samples."""
    s = sorted(samples)
    r = lambda v: None if v is None else round(v, 3)
    return {
        "p50_ms": r(percentile(s, 0.50)),
        "p90_ms": r(percentile(s, 0.90)),
        "p99_ms": r(percentile(s, 0.99)),
        "max_ms": r(s[-1]) if s else None,
    }


def machine():
    """"N cores, X GiB, CPU model" from /proc, as loadgen writes it."""
    model, cores, mem_kb = "unknown CPU", 0, 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("processor"):
                    cores += 1
                elif line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return f"{cores} cores, {mem_kb / 1024 / 1024:.1f} GiB, {model}"


def busiest_window_pct(samples, window, clk_tck):
    """CPU % of one core over the busiest `window` seconds of (time s, cumulative ticks) samples.

    The whole span is used when it is shorter than the window; None without two samples.
    """
    if len(samples) < 2:
        return None
    best = None
    j = 0
    for i, (t0, c0) in enumerate(samples):
        while j < len(samples) - 1 and samples[j][0] - t0 < window:
            j += 1
        t1, c1 = samples[j]
        if t1 <= t0:
            break
        pct = (c1 - c0) / clk_tck / (t1 - t0) * 100
        best = pct if best is None or pct > best else best
        if samples[j][0] - t0 < window:
            break  # later windows are shorter than the window
    return None if best is None else round(best, 2)


def read_cpu_samples(path):
    """(time s, cumulative ticks) pairs from run.sh's cpu.txt ("EPOCH TICKS" lines)."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    out.append((float(parts[0]), float(parts[1])))
                except ValueError:
                    continue
    return out


def summarize(run_dir, system, users, rate, think, iterations, machine_name, date,
              generator_cpu=None, order=None):
    """Returns the tsung-chat and tsung-login rows of one run directory."""
    try:
        with open(os.path.join(run_dir, "tsung-fullstats.log")) as f:
            samples = parse_fullstats(f.read())
        with open(os.path.join(run_dir, "tsung.log")) as f:
            counters = parse_counters(f.read())
    except OSError as e:
        raise SummaryError(str(e)) from e

    lat = samples.get("xmpp_msg_latency", [])
    loops = samples.get("tr_chat_loop", [])
    logins = samples.get("tr_login", [])
    errors = {k: int(v) for k, v in counters.items()
              if (k.startswith("error") or k == "timeout") and v}
    # Every no_ack request is a chat message except presence:final and close (one each per
    # user that finished its chat loop); an error_no_online chat sends nothing.
    noack = int(counters.get("request_noack", 0))
    sent = max(noack - 2 * len(loops) - errors.get("error_no_online", 0), 0)
    loop_s = sum(loops) / len(loops) / 1000 if loops else None
    achieved = round(sent / loop_s, 1) if loop_s else None
    mean_lat = round(sum(lat) / len(lat), 3) if lat else None
    err_txt = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
    common = {
        "system": system,
        "rss_bytes_per_session": None,
        "generator_cpu_pct": None,
        "server_cpu_pct": None,
        "machine": machine_name,
        "date": date,
    }
    chat = dict(common)
    chat["generator_cpu_pct"] = generator_cpu
    chat.update({
        "scenario": "tsung-chat",
        "sessions": len(loops),
        "msgs_per_sec": achieved,
        **latency_fields(lat),
        "lost": max(sent - len(lat), 0),
        "offered_rate": float(rate),
        "note": (
            f"tsung 1.7, {users} users, each sends {iterations} stamped chats to another "
            f"online user (round robin over tsung's online list), {think} s apart. "
            f"msgs_per_sec = sent / mean tr_chat_loop duration ({sent} / "
            f"{loop_s if loop_s is None else round(loop_s, 3)} s; sent = request_noack "
            f"{noack} - 2 x {len(loops)} (presence:final, close) - error_no_online). "
            f"p50/p90/p99/max = nearest-rank over the {len(lat)} xmpp_msg_latency samples of "
            f"tsung-fullstats.log (mean {mean_lat} ms); tsung.log itself only gives "
            f"mean/stddev/max per 10 s. lost = sent - samples: tsung takes at most one stamp "
            f"per TCP read, so it is an upper bound on loss. generator_cpu_pct = tsung's "
            f"Erlang VM (one scheduler, CPU 0), % of one core over its busiest chat-long "
            f"window of 1 s /proc samples. Generator order on this server process: "
            f"{order or 'tsung only'}. tsung errors: {err_txt}."
        ),
    })
    login = dict(common)
    login.update({
        "scenario": "tsung-login",
        "sessions": len(logins),
        "msgs_per_sec": None,
        **latency_fields(logins),
        "lost": max(users - len(logins), 0),
        "offered_rate": None,
        "note": (
            f"login transaction of the tsung-chat run: TCP, STARTTLS, SASL PLAIN, restart, "
            f"bind, roster get (each step waits for its answer); users arrive at 100/s, so "
            f"msgs_per_sec is not a capacity (null). p50/p90/p99/max = nearest-rank over "
            f"the {len(logins)} tr_login samples of tsung-fullstats.log; lost = users "
            f"without a completed login."
        ),
    })
    return [chat, login]


def loadgen_rows(path, order="loadgen tsung"):
    """The step rows (not the peak summary) of a loadgen chat JSON file, with a note."""
    try:
        with open(path) as f:
            rows = json.load(f)
    except (OSError, ValueError) as e:
        raise SummaryError(f"{path}: {e}") from e
    if not isinstance(rows, list):
        raise SummaryError(f"{path}: not a JSON list of rows")
    out = []
    for r in rows:
        if isinstance(r, dict) and str(r.get("note") or "").startswith("step"):
            r = dict(r)
            r["note"] = (f"loadgen chat at the tsung rate, same server process, same users, "
                         f"order: {order} ({r.get('note')}); fixed partner pairs, sends "
                         f"evenly spread")
            out.append(r)
    return out


def append_rows(path, rows):
    """Appends rows to the JSON list in path (created when missing)."""
    existing = []
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if text.strip():
            existing = json.loads(text)
            if not isinstance(existing, list):
                raise SummaryError(f"{path}: not a JSON list of rows")
    existing.extend(rows)
    with open(path, "w") as f:
        f.write(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def main(argv):
    """Command line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log-dir", required=True)
    p.add_argument("--system", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="offered total msgs/s")
    p.add_argument("--think", required=True, help="seconds between one user's messages")
    p.add_argument("--iterations", type=int, required=True, help="messages per user")
    p.add_argument("--loadgen-json", help="loadgen chat rows of the same rate to add")
    p.add_argument("--order", default="loadgen tsung", help="which generator ran first")
    p.add_argument("--cpu-samples", help="run.sh's cpu.txt: EPOCH TICKS of tsung's VM")
    p.add_argument("--cpu-window", type=float, default=10.0, help="seconds (the chat length)")
    p.add_argument("--clk-tck", type=float, default=100.0)
    p.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "results", "tsung.json"))
    a = p.parse_args(argv)
    try:
        run_dir = find_run_dir(a.log_dir)
        cpu = None
        if a.cpu_samples and os.path.exists(a.cpu_samples):
            cpu = busiest_window_pct(read_cpu_samples(a.cpu_samples), a.cpu_window, a.clk_tck)
        rows = summarize(run_dir, a.system, a.users, a.rate, a.think, a.iterations,
                         machine(), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
                         generator_cpu=cpu, order=a.order)
        if a.loadgen_json and os.path.exists(a.loadgen_json):
            rows = loadgen_rows(a.loadgen_json, a.order) + rows
        elif a.loadgen_json:
            print(f"summarize.py: {a.loadgen_json} missing, no loadgen rows", file=sys.stderr)
        append_rows(a.out, rows)
    except (SummaryError, ValueError) as e:
        print(f"summarize.py: {e}", file=sys.stderr)
        return 1
    for r in rows:
        print(f"{r['system']} {r['scenario']}: sessions {r['sessions']} msgs/s "
              f"{r['msgs_per_sec']} p50 {r['p50_ms']} p99 {r['p99_ms']} max {r['max_ms']} "
              f"lost {r['lost']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
