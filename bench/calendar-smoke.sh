#!/usr/bin/env bash
# The calendar burst benchmark, short (CI): bench/run.sh SCENARIOS=calendar with 200 users,
# 4 watchers each, 20 chatting at 200 msgs/s, calendars polled every 5 s; fails unless every
# watcher got its update and no chat message was lost. Needs herald and loadgen built
# (release, or the directory BIN_DIR names: CI passes its debug build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/herald-cal-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
SYSTEMS=herald SCENARIOS=calendar CAL_USERS=200 CAL_WATCH=4 CAL_CHAT_SESSIONS=20 \
  CAL_CHAT_RATE=200 CAL_POLL=5 BUILD=0 RESULTS="$out/results" WORK="$out/work" \
  timeout -k 10 300 bash "$ROOT/bench/run.sh"
python3 - "$out/results/calendar.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 1, rows
c = rows[0]["calendar"]
print(f"calendar smoke: {c['received']}/{c['expected']} updates, every watcher within "
      f"{c['all_have_ms']} ms; chat p99 {c['chat_during']['p99_ms']} ms during, {c['chat_lost']} lost")
assert c["expected"] == 800 and c["received"] == c["expected"], c
assert c["all_have_ms"] is not None and c["all_have_ms"] < 10_000, c
assert c["chat_sent"] > 0 and c["chat_lost"] == 0, c
PY
