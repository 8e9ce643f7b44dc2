#!/usr/bin/env bash
# The presence storm benchmark, short (CI): bench/run.sh SCENARIOS=storm on Herald, Prosody and
# ejabberd (pinned) with 200 users, 20 watchers each, a change every 5 s for 10 s (8,000
# deliveries per system); fails unless every system delivered every change to every watcher.
# Exercises the scenario and bench/rosters.py (Prosody's and ejabberd's stored subscriptions).
# Needs herald and loadgen built (release, or the directory BIN_DIR names: CI passes its debug
# build); Prosody and ejabberd installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/herald-storm-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
# ejabberd runs as its own user and must reach its files under WORK (mktemp made this 0700).
chmod 755 "$out"
SYSTEMS="herald prosody ejabberd" PLACEMENTS=pinned SCENARIOS=storm STORM_USERS=200 \
  STORM_WATCH=20 STORM_INTERVAL=5 STORM_SECS=10 BUILD=0 RESULTS="$out/results" \
  WORK="$out/work" timeout -k 10 420 bash "$ROOT/bench/run.sh"
python3 - "$out/results/storm.json" <<'PY'
import json, sys
rows = {r["system"]: r for r in json.load(open(sys.argv[1]))}
assert sorted(rows) == ["ejabberd", "herald", "prosody"], sorted(rows)
for system, r in sorted(rows.items()):
    print(f"storm smoke: {system}: {r['delivered']} deliveries, {r['lost']} lost, "
          f"p99 {r['p99_ms']} ms, {r['server_cpu_us_per_msg']} server CPU-us/delivery")
    # 200 users x 2 changes each (at 0-5 s and 5-10 s) x 20 watchers.
    assert r["delivered"] == 8000 and r["lost"] == 0, (system, r)
PY
