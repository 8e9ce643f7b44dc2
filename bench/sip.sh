#!/usr/bin/env bash
# SIP through the routing node (Herald only: Prosody and ejabberd do not speak SIP).
#
# A 3-node Herald cluster (release build, one process per node on 127.0.0.51-53, routing node =
# node 1), SIPp (Debian sip-tester) as the federated SIP domain `sip.test` on 127.0.0.60, and
# `loadgen sip-users` as the Herald users (real TLS XMPP clients, each logged in on its home
# node, every one homed on node 2 or 3). The scenarios and the rows are in bench/sip/bench.py;
# rows are appended to $RESULTS/sip.json. See bench/README.md, "SIP through the routing node".
#
#   bench/sip.sh                                   # the recorded run (about 3 minutes)
#   SIP_RATES=200,500 SIP_STEP=2 SIP_WATCHERS=50 ROUNDS=2 RESULTS=/tmp/sip-smoke bench/sip.sh
#
# Knobs (environment): SIP_SCENARIOS ("message subscribe"), SIP_RATES (MESSAGE/s per step,
# "500,1000,2000,4000"), SIP_STEP (s per step, 10), SIP_DRAIN (s, 5), SIP_RECIPIENTS (50),
# SIP_WATCHERS (1000), SIP_PUBLISHERS (1), SUB_RATE (SUBSCRIBE/s, 200), ROUNDS (status changes,
# 5), ROUND_INTERVAL (s, 2), PLACEMENT (unpinned | pinned: nodes on CPU 1 with --workers 1,
# SIPp and loadgen on CPU 0), WORK (/tmp/hb-sip), RESULTS (bench/results), BUILD (1; 0 uses
# the release binaries already built).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export HERALD=${HERALD:-$TARGET/release/herald}
export LOADGEN=${LOADGEN:-$TARGET/release/loadgen}
export WORK=${WORK:-/tmp/hb-sip}
export RESULTS=${RESULTS:-$ROOT/bench/results}
command -v sipp >/dev/null || { echo "sip.sh: SIPp is missing: apt-get install sip-tester" >&2; exit 1; }
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p herald-node --bin herald -p herald-bench --bin loadgen)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$WORK" "$RESULTS"
echo "# bench/sip.sh $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) $(date -u +%FT%TZ)" >>"$WORK/runs.txt"
exec python3 "$ROOT/bench/sip/bench.py"
