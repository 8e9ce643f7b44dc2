#!/usr/bin/env bash
# Herald vs Prosody vs ejabberd with the same generator, in one run, on one machine.
#
#   bench/run.sh                      # everything with the defaults below
#   SIZES="200" SYSTEMS="herald" bench/run.sh   # a quick subset
#
# Knobs (environment): SIZES (login storm session counts), LOGIN_PROCESSES (generator
# processes of the login storm, 2), IDLE_SIZES (idle hold counts; above 9,000 the generator
# runs as two processes), CHAT_SESSIONS, CHAT_REPEAT (chat runs per system, shape and
# placement), CHAT_RATES (total msgs/s steps), CHAT_STEP (seconds per step), CHAT_DRAIN
# (seconds of drain after each step), CHAT_SETTLE (quiet seconds between the logins and the
# first step), CHAT_STOP_AFTER (consecutive failing steps that end a
# run), SHAPES ("pairs oneway": chat traffic shapes), PLACEMENTS ("pinned unpinned": pinned =
# server on CPU 1, generator on CPU 0; unpinned = no taskset, both share both cores),
# FANOUT_WATCHERS, FANOUT_ROUNDS, FANOUT_RATE (status changes/s, default 5,000 / watchers),
# IDLE_HOLD (seconds), SYSTEMS ("herald prosody ejabberd"),
# CROSS_NODE=1 (also run chat across a 3-node Herald cluster, pinned), WORK (scratch dir),
# SCENARIOS (default "idle login chat fanout isolation"; "" runs none; isolation is Herald only:
# a 3-node cluster on 127.0.0.11-13 under chat at RATE msgs/s, default ISOLATION_FACTOR 1.2 x
# the Herald chat peak of the same placement in results/chat.json, for DURATION s, 60, while
# `cluster status` is called once per second), BUILD=0 (use the existing release binaries, no
# cargo build), BIN_DIR (where herald and loadgen are; default the release build's directory —
# the CI smokes pass the debug one with BUILD=0), PROSODY_OPPORTUNISTIC_WRITES (true/false),
# PROSODY_GC (incremental or generational), TSUNG=1 (also run the Tsung cross-check, bench/tsung/, on every system in the
# pinned placement: TSUNG_USERS, TSUNG_RATE total msgs/s, TSUNG_SECS of chat; TSUNG_ORDER
# "loadgen tsung" or "tsung loadgen": which generator goes first). SCENARIOS may also name
# calendar (Herald only, not in the default): CAL_USERS calendar-enabled users (10,000) whose
# meetings start in the same second, each watched by CAL_WATCH others (8), CAL_CHAT_SESSIONS
# (100) chatting at CAL_CHAT_RATE msgs/s (1,000) around the start, calendars served by
# `loadgen caldav-serve` over HTTPS and polled every CAL_POLL s (30), placement CAL_PLACEMENT
# (pinned). Rows: results/calendar.json. SCENARIOS may also name storm (every system, not in the
# default): STORM_USERS users (2,000) each watched by the next STORM_WATCH (100), every one
# changing status every STORM_INTERVAL s (10) for STORM_SECS s (60) — 20,000 deliveries/s
# offered; its users come after every other scenario's, so no earlier subscription adds
# watchers. Rows: results/storm.json.
# Each server gets its own 127.0.0.x address and unusual ports (5222 may be taken by others);
# clients connect from 127.0.1.1-16. Servers are started and stopped by PID.
set -euo pipefail
# Every server and generator process may use up to the machine's hard limit of open files.
ulimit -n "$(ulimit -Hn)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
RESULTS=${RESULTS:-$BENCH/results} # where rows are appended
WORK=${WORK:-/tmp/herald-bench}
SIZES=${SIZES:-"200 2000"}
LOGIN_PROCESSES=${LOGIN_PROCESSES:-2}
# 19,900: the server's open-files limit here is 20,000 (a hard limit root cannot raise).
IDLE_SIZES=${IDLE_SIZES:-"2000 10000 19900"}
CHAT_REPEAT=${CHAT_REPEAT:-1}
CHAT_SESSIONS=${CHAT_SESSIONS:-200}
CHAT_RATES=${CHAT_RATES:-"1000,2000,3000,5000,10000,15000,20000,25000,30000,40000,50000,64000,80000,100000,128000"}
CHAT_STEP=${CHAT_STEP:-10}
CHAT_DRAIN=${CHAT_DRAIN:-5}
CHAT_SETTLE=${CHAT_SETTLE:-5}
CHAT_STOP_AFTER=${CHAT_STOP_AFTER:-2}
SHAPES=${SHAPES:-"pairs oneway"}
PLACEMENTS=${PLACEMENTS:-"pinned unpinned"}
DURATION=${DURATION:-60}
RATE=${RATE:-}
ISOLATION_FACTOR=${ISOLATION_FACTOR:-1.2}
# Prosody tuning (bench/README.md, "Fairness"): chosen by a smoke comparison.
PROSODY_OPPORTUNISTIC_WRITES=${PROSODY_OPPORTUNISTIC_WRITES:-false}
PROSODY_GC=${PROSODY_GC:-generational}
FANOUT_WATCHERS=${FANOUT_WATCHERS:-1000}
FANOUT_ROUNDS=${FANOUT_ROUNDS:-20}
# Status changes per second: 5,000 deliveries/s offered whatever the watcher count (5 rounds/s
# for 1,000 watchers, one round every 2 s for 10,000), so a round is measured on its own, not
# queued behind the previous one.
FANOUT_RATE=${FANOUT_RATE:-$(awk -v w="$FANOUT_WATCHERS" 'BEGIN { print 5000 / w }')}
IDLE_HOLD=${IDLE_HOLD:-10}
STORM_USERS=${STORM_USERS:-2000}
STORM_WATCH=${STORM_WATCH:-100}
STORM_INTERVAL=${STORM_INTERVAL:-10}
STORM_SECS=${STORM_SECS:-60}
SYSTEMS=${SYSTEMS:-"herald prosody ejabberd"}
CROSS_NODE=${CROSS_NODE:-0}
SCENARIOS=${SCENARIOS-"idle login chat fanout isolation"}
BUILD=${BUILD:-1}
TSUNG=${TSUNG:-0}
TSUNG_USERS=${TSUNG_USERS:-$CHAT_SESSIONS}
TSUNG_RATE=${TSUNG_RATE:-1000}
TSUNG_SECS=${TSUNG_SECS:-10}
TSUNG_ORDER=${TSUNG_ORDER:-"loadgen tsung"}
DOMAIN=example.test
HERALD_IP=127.0.0.21
PROSODY_IP=127.0.0.31
EJABBERD_IP=127.0.0.32
C2S_PORT_EJABBERD=35222
C2S_PORT_HERALD=15222
C2S_PORT_PROSODY=25222

has_scenario() { [[ " $SCENARIOS " == *" $1 "* ]]; }
# bench/rosters.py's flags: the subscriptions the selected storm and fan-out scenarios make.
roster_args() {
  has_scenario storm && echo --storm "$STORM_FIRST" "$STORM_USERS" "$STORM_WATCH"
  has_scenario fanout && echo --fanout "$FANOUT_WATCHERS"
  true
}
for pl in $PLACEMENTS; do
  case $pl in pinned | unpinned) ;; *) echo "PLACEMENTS: unknown placement $pl" >&2; exit 2 ;; esac
done
for sh in $SHAPES; do
  case $sh in pairs | oneway) ;; *) echo "SHAPES: unknown shape $sh" >&2; exit 2 ;; esac
done

# Users u1..u<max_users> are created on every system: enough for the largest selected scenario.
max_users=0
has_scenario fanout && max_users=$FANOUT_WATCHERS
sizes_used=""
has_scenario idle && sizes_used=$IDLE_SIZES
has_scenario login && sizes_used="$sizes_used $SIZES"
has_scenario chat && sizes_used="$sizes_used $CHAT_SESSIONS"
has_scenario isolation && sizes_used="$sizes_used $CHAT_SESSIONS"
[ "$TSUNG" = 1 ] && sizes_used="$sizes_used $TSUNG_USERS"
for n in $sizes_used; do [ "$n" -gt "$max_users" ] && max_users=$n; done
max_users=$((max_users + 1))
# The storm's users follow everyone else's (u<STORM_FIRST>…).
STORM_FIRST=$((max_users + 1))
has_scenario storm && max_users=$((max_users + STORM_USERS))

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=${BIN_DIR:-$CARGO_TARGET_DIR/release}
HERALD=$BIN_DIR/herald
LOADGEN=$BIN_DIR/loadgen
PIDS=()

log() { echo "[$(date +%T)] $*" >&2; }

cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# ---- placements: where the server and the generator run ----------------------------------
# pinned: server on CPU 1, generator on CPU 0 (taskset); unpinned: no taskset for either.
# Sets PLACEMENT, SRV (command prefix of servers) and LGP (prefix of the generator).
SRV=(taskset -c 1)
LGP=(taskset -c 0)
PLACEMENT=pinned
set_placement() { # pinned|unpinned
  PLACEMENT=$1
  case $1 in
    pinned) SRV=(taskset -c 1); LGP=(taskset -c 0) ;;
    unpinned) SRV=(); LGP=() ;;
  esac
}

wait_port() { # ip port seconds
  for _ in $(seq $(($3 * 10))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on $1:$2"; return 1
}

# ---- build and install ---------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "building herald and loadgen (release)"
  (cd "$ROOT" && cargo build --release -p herald-node --bin herald -p herald-bench --bin loadgen)
fi
# `herald agent --workers N` (runtime worker threads; default: the available cores) is new:
# pinned Herald gets --workers 1 when the binary knows the flag, unpinned Herald its default.
HERALD_HAS_WORKERS=0
if [ -x "$HERALD" ] && "$HERALD" agent --help 2>/dev/null | grep -q -- --workers; then
  HERALD_HAS_WORKERS=1
fi
herald_workers() { # prints the --workers flag of the current placement, if any
  if [ "$PLACEMENT" = pinned ] && [ "$HERALD_HAS_WORKERS" = 1 ]; then echo --workers 1; fi
}
herald_flags_note() {
  if [ "$PLACEMENT" = pinned ]; then
    if [ "$HERALD_HAS_WORKERS" = 1 ]; then echo "--workers 1"; else echo "no --workers flag in this binary"; fi
  else
    echo "default workers (no --workers flag)"
  fi
}
if [[ " $SYSTEMS " == *" prosody "* ]] && ! command -v prosody >/dev/null; then
  log "installing prosody"
  DEBIAN_FRONTEND=noninteractive apt-get install -y prosody lua-unbound >/dev/null
fi
if [ "$TSUNG" = 1 ] && ! command -v tsung >/dev/null; then
  log "installing tsung"
  DEBIAN_FRONTEND=noninteractive apt-get install -y tsung >/dev/null
fi
mkdir -p "$WORK" "$RESULTS"
# Other processes share this machine: record CPU use of everything during the run.
echo "# bench/run.sh SYSTEMS=\"$SYSTEMS\" PLACEMENTS=\"$PLACEMENTS\" SHAPES=\"$SHAPES\" CROSS_NODE=$CROSS_NODE $(date -u +%FT%TZ)" >>"$RESULTS/vmstat.txt"
vmstat -n -t 5 >>"$RESULTS/vmstat.txt" 2>&1 &
PIDS+=($!)

# ---- one certificate for every server: EC P-256 leaf for the domain, own CA ----------------
CERTS=$WORK/certs
if [ ! -f "$CERTS/$DOMAIN.crt" ]; then
  mkdir -p "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=bench CA" -keyout "$CERTS/ca.key" -out "$CERTS/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$DOMAIN" \
    -keyout "$CERTS/$DOMAIN.key" -out "$CERTS/$DOMAIN.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n' "$DOMAIN" >"$CERTS/ext"
  openssl x509 -req -in "$CERTS/$DOMAIN.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
    -CAcreateserial -days 30 -extfile "$CERTS/ext" -out "$CERTS/$DOMAIN.crt" 2>/dev/null
fi
CA=$CERTS/ca.pem

# ---- scenarios (same generator, same arguments for every system) ----------------------------
run_scenarios() { # system ip port — the system's "${sys}_restart" function sets $pid and
  # $SERVER_FLAGS (how it was started); PLACEMENT, SRV and LGP are set by set_placement.
  local sys=$1 ip=$2 port=$3
  local lg=("${LGP[@]}" "$LOADGEN")
  # Every group of measurements starts on a freshly started server process, so that none pays
  # for what an earlier one left behind (freed memory still held, collector work, timers).
  fresh() {
    "${sys}_restart"
    log "$sys ($PLACEMENT; $SERVER_FLAGS): $1 on a fresh server (pid $pid), load $(cut -d' ' -f1-3 /proc/loadavg)"
  }
  common() { printf '%s\n' --server "$ip:$port" --ca "$CA" --domain "$DOMAIN" --system "$sys" \
    --server-pid "$pid" --password-prefix pw --user-prefix u --placement "$PLACEMENT" \
    --server-flags "$SERVER_FLAGS"; }
  if has_scenario idle; then
    for n in $IDLE_SIZES; do
      local procs=1
      [ "$n" -gt 9000 ] && procs=2
      fresh "idle $n ($procs generator processes)"
      mapfile -t c < <(common)
      "${lg[@]}" idle "${c[@]}" --users "$n" --processes "$procs" --duration "$IDLE_HOLD" \
        --json "$RESULTS/idle.json"
    done
  fi
  if has_scenario login; then
    fresh "login storm $SIZES ($LOGIN_PROCESSES generator processes)"
    mapfile -t c < <(common)
    for n in $SIZES; do
      "${lg[@]}" login "${c[@]}" --users "$n" --processes "$LOGIN_PROCESSES" \
        --json "$RESULTS/login.json"
      # The same users again as a reconnect storm (SCRAM keys cached by the generator).
      "${lg[@]}" login "${c[@]}" --users "$n" --processes "$LOGIN_PROCESSES" --reconnect \
        --json "$RESULTS/login.json"
    done
  fi
  if has_scenario chat; then
    local shape
    for shape in $SHAPES; do
      for r in $(seq "$CHAT_REPEAT"); do
        fresh "chat $shape, $CHAT_SESSIONS sessions, rates $CHAT_RATES (run $r of $CHAT_REPEAT)"
        mapfile -t c < <(common)
        "${lg[@]}" chat "${c[@]}" --users "$CHAT_SESSIONS" --rates "$CHAT_RATES" \
          --shape "$shape" --duration "$CHAT_STEP" --drain "$CHAT_DRAIN" --settle "$CHAT_SETTLE" \
          --stop-after "$CHAT_STOP_AFTER" --json "$RESULTS/chat.json"
      done
    done
  fi
  if has_scenario fanout; then
    fresh "fanout to $FANOUT_WATCHERS watchers"
    mapfile -t c < <(common)
    "${lg[@]}" fanout "${c[@]}" --users $((FANOUT_WATCHERS + 1)) --rounds "$FANOUT_ROUNDS" \
      --rate "$FANOUT_RATE" --json "$RESULTS/fanout.json"
  fi
  if has_scenario storm; then
    fresh "presence storm: $STORM_USERS users, $STORM_WATCH watchers each, a change every ${STORM_INTERVAL} s for ${STORM_SECS} s"
    mapfile -t c < <(common)
    "${lg[@]}" storm "${c[@]}" --users "$STORM_USERS" --first-user "$STORM_FIRST" \
      --watch "$STORM_WATCH" --interval "$STORM_INTERVAL" --duration "$STORM_SECS" \
      --json "$RESULTS/storm.json"
  fi
  # Tsung runs pinned only: one Erlang scheduler on CPU 0 (see tsung_start_once).
  if [ "$TSUNG" = 1 ] && [ "$PLACEMENT" = pinned ]; then
    fresh "tsung cross-check"
    tsung_run "$sys" "$ip" "$port" "$pid"
  fi
  "${sys}_stop"
}

# ---- Tsung cross-check (TSUNG=1): bench/tsung/chat.xml.in at one fixed rate -----------------
TSUNG_EPMD_PORTS="43690 43691 43692 43693 43694 43695 43696 43697" # private epmd, 127.0.0.1
tsung_run() { # system ip port pid
  local sys=$1 ip=$2 port=$3 pid=$4 dir=$WORK/tsung/$1
  local think iter arrival_rate=100 arrival_secs drain=2 limit
  rm -rf "$dir"
  mkdir -p "$dir/log"
  think=$(awk -v u="$TSUNG_USERS" -v r="$TSUNG_RATE" 'BEGIN { printf "%.4f", u / r }')
  iter=$(( (TSUNG_RATE * TSUNG_SECS + TSUNG_USERS - 1) / TSUNG_USERS ))
  # Tsung drops the users it could not start within the phase (Poisson arrivals, a busy
  # generator): give the phase twice the time it needs plus 5 s; it ends at maxnumber anyway.
  arrival_secs=$(( 2 * (TSUNG_USERS + arrival_rate - 1) / arrival_rate + 5 ))
  sed -e "s|@IP@|$ip|g; s|@PORT@|$port|g; s|@DOMAIN@|$DOMAIN|g; s|@CA@|$CA|g" \
    -e "s|@USERS@|$TSUNG_USERS|g; s|@MAXUSERS@|$((TSUNG_USERS + 10))|g; s|@ITER@|$iter|g" \
    -e "s|@THINK@|$think|g; s|@DRAIN@|$drain|g; s|@BARRIER_MS@|60000|g" \
    -e "s|@ARRIVAL_RATE@|$arrival_rate|g; s|@ARRIVAL_SECS@|$arrival_secs|g" \
    "$BENCH/tsung/chat.xml.in" >"$dir/chat.xml"
  # Bound: arrival + login (30 s idle timeout) + barrier (60 s) + chat + drain + slack.
  limit=$((arrival_secs + 30 + 60 + TSUNG_SECS * 2 + drain + 60))
  local step
  for step in $TSUNG_ORDER; do
    case $step in
      loadgen) tsung_loadgen_side ;;
      tsung) tsung_tsung_side ;;
      *) log "TSUNG_ORDER: unknown step $step" ;;
    esac
  done
  python3 "$BENCH/tsung/summarize.py" --log-dir "$dir/log" --system "$sys" \
    --users "$TSUNG_USERS" --rate "$TSUNG_RATE" --think "$think" --iterations "$iter" \
    --loadgen-json "$dir/loadgen-chat.json" --order "$TSUNG_ORDER" \
    --cpu-samples "$dir/cpu.txt" --cpu-window "$TSUNG_SECS" --clk-tck "$(getconf CLK_TCK)" \
    --out "$RESULTS/tsung.json" || log "$sys: no tsung rows (summarize.py failed)"
}

# Our generator at the same rate, same users, same server process (tsung_run's variables): the
# comparison rows (scenario chat) go to tsung.json, not chat.json.
tsung_loadgen_side() {
  log "$sys: loadgen chat at the tsung rate ($TSUNG_RATE msgs/s, ${TSUNG_SECS} s)"
  taskset -c 0 "$LOADGEN" chat --server "$ip:$port" --ca "$CA" --domain "$DOMAIN" \
    --system "$sys" --server-pid "$pid" --password-prefix pw --user-prefix u \
    --users "$TSUNG_USERS" --rates "$TSUNG_RATE" --duration "$TSUNG_SECS" --drain 2 \
    --placement pinned --server-flags "$SERVER_FLAGS" \
    --json "$dir/loadgen-chat.json" || log "$sys: loadgen chat failed"
}

# Tsung itself (tsung_run's variables). In one series of runs, three tsung starts in a row
# failed within a second, before writing any log (cause not found; the next start worked):
# a start that leaves no tsung.log is retried once, on another private epmd port.
tsung_tsung_side() {
  local attempt
  for attempt in 1 2; do
    tsung_start_once "$attempt" && return 0
    ls "$dir"/log/*/tsung.log >/dev/null 2>&1 && return 0
    log "$sys: tsung did not start (attempt $attempt)"
    sleep 5
  done
}

tsung_start_once() { # attempt; returns non-zero when tsung exited with an error
  local epmd="" epmd_port rc=0 p
  # A private epmd for tsung's Erlang node on 127.0.0.1, stopped after the run: the first port
  # (from the attempt's offset on) where a fresh epmd stays up.
  for p in $(echo $TSUNG_EPMD_PORTS | cut -d' ' -f"$((2 * $1 - 1))"-); do
    epmd -port "$p" -address 127.0.0.1 >"$dir/epmd-$p.log" 2>&1 &
    epmd=$!
    sleep 0.5
    if kill -0 "$epmd" 2>/dev/null; then
      epmd_port=$p
      PIDS+=("$epmd")
      break
    fi
    epmd=""
  done
  if [ -z "$epmd" ]; then
    log "$sys: no private epmd could start (ports $TSUNG_EPMD_PORTS)"
    return 1
  fi
  log "$sys: tsung chat, $TSUNG_USERS users, $TSUNG_RATE msgs/s offered for ${TSUNG_SECS} s (limit ${limit} s, epmd port $epmd_port)"
  # Tsung's Erlang node: no web GUI (-n), node name on 127.0.0.1 (-I), distribution port on
  # 127.0.0.1 only, our epmd, TCP_NODELAY on its sockets like loadgen (tsung sets none, and Nagle
  # costs ~40 ms after the TLS handshake), one scheduler without busy-waiting (it has one CPU;
  # the default two schedulers spin against each other on it); HOME moves ~/.tsung into the
  # scratch dir. Its VM's CPU time is sampled every second into cpu.txt.
  HOME=$dir ERL_CRASH_DUMP=$dir/erl_crash.dump ERL_EPMD_PORT=$epmd_port \
    ERL_EPMD_ADDRESS=127.0.0.1 ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1} \
-kernel inet_default_connect_options [{nodelay,true}] +S 1:1 +SDcpu 1:1 +sbwt none \
+sbwtdcpu none +sbwtdio none" \
    timeout -k 10 "$limit" taskset -c 0 tsung -n -I 127.0.0.1 -f "$dir/chat.xml" \
    -l "$dir/log" start >"$dir/stdout" 2>&1 &
  local tp=$! beam=""
  PIDS+=("$tp") # timeout passes a TERM on to tsung's process group
  : >"$dir/cpu.txt"
  while kill -0 "$tp" 2>/dev/null; do # bounded: timeout ends tsung after $limit s
    # timeout leads its own process group: tsung's beam.smp is the one in that group.
    [ -n "$beam" ] || beam=$(ps -e -o pid=,pgid=,comm= |
      awk -v g="$tp" '$2 == g && $3 == "beam.smp" { print $1; exit }' || true)
    if [ -n "$beam" ] && [ -r "/proc/$beam/stat" ]; then
      echo "$(date +%s.%N) $(awk '{ print $14 + $15 }' "/proc/$beam/stat")" >>"$dir/cpu.txt"
    fi
    sleep 1
  done
  wait "$tp" || rc=$?
  stop_pid "$epmd"
  if [ "$rc" != 0 ]; then
    log "$sys: tsung exited with status $rc ($dir/stdout ends with:)"
    tail -n 5 "$dir/stdout" >&2 || true
    return 1
  fi
}

# ---- Herald ---------------------------------------------------------------------------------
herald_ports() { # prints the port flags shared by every node
  echo --c2s-port $C2S_PORT_HERALD --c2s-tls-port 15223 --s2s-port 15269 --sip-port 15060 \
    --sip-tls-port 15061 --cluster-port 17470 --admin-port 17471 --http-port 19470
}

start_herald() { # id ip dir extra... (placement: SRV prefix, --workers 1 when pinned)
  local id=$1 ip=$2 dir=$3; shift 3
  # shellcheck disable=SC2046 # herald_ports prints several flags
  start_herald_ports "$id" "$ip" "$dir" $(herald_ports) "$@"
}

start_herald_ports() { # id ip dir flags... — no port flags added (the isolation cluster uses the defaults)
  local id=$1 ip=$2 dir=$3; shift 3
  mkdir -p "$dir"
  # A publisher with more watchers than the default roster limit (1,000 items, 1 MiB of stored
  # state) needs the operator to raise both, as any deployment with such rosters would.
  local roster_max=$((FANOUT_WATCHERS > 1000 ? FANOUT_WATCHERS : 1000))
  local user_bytes=$((roster_max * 1024 > 1048576 ? roster_max * 1024 : 1048576))
  printf '[xmpp]\nroster_max = %d\nmax_user_bytes = %d\n' "$roster_max" "$user_bytes" \
    >"$dir/herald.toml"
  # shellcheck disable=SC2046
  "${SRV[@]}" "$HERALD" agent --config "$dir/herald.toml" --node-id "$id" --bind "$ip" --data-dir "$dir" \
    --domain "$DOMAIN" --tls-cert "$CERTS/$DOMAIN.crt" \
    --tls-key "$CERTS/$DOMAIN.key" --log-level warn $(herald_workers) "$@" >"$dir/log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

herald_users() { # admin_ip count [admin_port]
  local admin=$1:${3:-17471} n=$2
  seq 1 "$n" | xargs -P 8 -I{} sh -c \
    "'$HERALD' --admin $admin user add u{}@$DOMAIN --password pw{} >/dev/null 2>&1 ||
     '$HERALD' --admin $admin user show u{}@$DOMAIN >/dev/null 2>&1 || echo 'user u{} failed' >&2"
}

herald_restart() {
  [ -n "${pid:-}" ] && herald_stop
  start_herald 1 $HERALD_IP "$WORK/herald" --bootstrap # an existing data dir is resumed
  pid=$LAST_PID
  SERVER_FLAGS=$(herald_flags_note)
  wait_port $HERALD_IP 17471 30
  wait_port $HERALD_IP $C2S_PORT_HERALD 30
  sleep 2
}
herald_stop() { stop_pid "$pid"; pid=""; }

if [[ " $SYSTEMS " == *" herald "* ]]; then
  rm -rf "$WORK/herald"
  pid=""
  herald_restart
  log "herald (pid $pid): adding $max_users users"
  herald_users $HERALD_IP "$max_users"
  for pl in $PLACEMENTS; do
    set_placement "$pl"
    run_scenarios herald $HERALD_IP $C2S_PORT_HERALD
  done
fi

# ---- Prosody --------------------------------------------------------------------------------
if [[ " $SYSTEMS " == *" prosody "* ]]; then
  P=$WORK/prosody
  rm -rf "$P"
  mkdir -p "$P/data" "$P/certs"
  cp "$CERTS/$DOMAIN.crt" "$P/certs/$DOMAIN.crt"
  cp "$CERTS/$DOMAIN.key" "$P/certs/$DOMAIN.key"
  cat >"$P/prosody.cfg.lua" <<EOF
run_as_root = true
pidfile = "$P/prosody.pid"
data_path = "$P/data"
interfaces = { "$PROSODY_IP" }
c2s_ports = { $C2S_PORT_PROSODY }
c2s_direct_tls_ports = { }
s2s_ports = { 25269 }
http_ports = { }
https_ports = { }
network_backend = "epoll"
network_settings = { nagle = false; opportunistic_writes = $PROSODY_OPPORTUNISTIC_WRITES }
gc = { mode = "$PROSODY_GC" }
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
certificates = "$P/certs"
log = { warn = "$P/prosody.log" }
unbound = { resolvconf = false, hoststxt = false, forward = "127.0.0.53", options = { ["local-zone:"] = "test. transparent" } }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "presence"; "message"; "iq" }
modules_disabled = { "s2s"; "offline"; "admin_socket" }
VirtualHost "$DOMAIN"
EOF
  # Accounts in Prosody's internal_hashed format (SCRAM-SHA-1, 4096 iterations as Herald).
  python3 - "$P/data" "$DOMAIN" "$max_users" <<'EOF'
import hashlib, hmac, os, sys
data, domain, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = os.path.join(data, domain.replace(".", "%2e"), "accounts")
os.makedirs(d, exist_ok=True)
for i in range(1, n + 1):
    salt = os.urandom(12).hex()
    sp = hashlib.pbkdf2_hmac("sha1", f"pw{i}".encode(), salt.encode(), 4096)
    ck = hmac.new(sp, b"Client Key", "sha1").digest()
    sk = hmac.new(sp, b"Server Key", "sha1").hexdigest()
    with open(os.path.join(d, f"u{i}.dat"), "w") as f:
        f.write('return {\n\t["iteration_count"] = 4096;\n\t["salt"] = "%s";\n'
                '\t["server_key"] = "%s";\n\t["stored_key"] = "%s";\n};\n'
                % (salt, sk, hashlib.sha1(ck).hexdigest()))
EOF
  # The subscriptions of the storm and the fan-out, written into Prosody's roster storage as
  # the XMPP setup would leave them (bench/rosters.py says why).
  python3 "$BENCH/rosters.py" prosody "$P/data" "$DOMAIN" "$max_users" $(roster_args)
  prosody_restart() {
    [ -n "${pid:-}" ] && prosody_stop
    "${SRV[@]}" prosody --config "$P/prosody.cfg.lua" -F >>"$P/stdout" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port $PROSODY_IP $C2S_PORT_PROSODY 30
    SERVER_FLAGS="network_backend=epoll opportunistic_writes=$PROSODY_OPPORTUNISTIC_WRITES gc=$PROSODY_GC"
    if grep -q "Failed to apply GC" "$P/prosody.log" 2>/dev/null; then
      log "prosody: GC settings refused (see $P/prosody.log)"
    fi
  }
  prosody_stop() { stop_pid "$pid"; pid=""; }
  pid=""
  for pl in $PLACEMENTS; do
    set_placement "$pl"
    run_scenarios prosody $PROSODY_IP $C2S_PORT_PROSODY
  done
fi

# ---- ejabberd -------------------------------------------------------------------------------
descendant() { # pid comm: first descendant of pid whose command is comm
  local pid=$1 comm=$2 kids k
  kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  for k in $kids; do
    [ "$(cat "/proc/$k/comm" 2>/dev/null)" = "$comm" ] && { echo "$k"; return 0; }
    descendant "$k" "$comm" && return 0
  done
  return 1
}

if [[ " $SYSTEMS " == *" ejabberd "* ]]; then
  command -v ejabberdctl >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd >/dev/null
  E=$WORK/ejabberd
  rm -rf "$E"
  mkdir -p "$E/logs" "$E/spool"
  cat "$CERTS/$DOMAIN.crt" "$CERTS/$DOMAIN.key" >"$E/$DOMAIN.pem"
  cat >"$E/ejabberd.yml" <<EOF
hosts: ["$DOMAIN"]
loglevel: warning
certfiles: ["$E/$DOMAIN.pem"]
listen:
  - port: $C2S_PORT_EJABBERD
    ip: "$EJABBERD_IP"
    module: ejabberd_c2s
    starttls_required: true
    shaper: none
    backlog: 1024
    max_stanza_size: 262144
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
shaper_rules: {}
# ejabberd's caches (roster, auth, …) hold 1,000 entries by default; with 2,000 or 10,000 users
# online its roster cache thrashed ("Shrinking cache 'roster_cache' … you should increase
# maximum cache size" in its log) and the storm cost it 85 µs per delivery. Its documented
# remedy: a cache as large as the user base.
cache_size: 100000
access_rules:
  c2s:
    allow: all
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
EOF
  # Erlang VM flags by placement (bench/README.md, "Fairness"): pinned to one core, one
  # scheduler; either way no scheduler busy-waiting, which would count as CPU work of the
  # server and steal the core from the generator (unpinned).
  ejabberd_cfg() {
    local erl="+sbwt none +sbwtdcpu none +sbwtdio none"
    [ "$PLACEMENT" = pinned ] && erl="+S 1:1 $erl"
    printf 'ERLANG_NODE=herald_bench@localhost\nINET_DIST_INTERFACE=127.0.0.1\nERL_OPTIONS="%s"\n' \
      "$erl" >"$E/ejabberdctl.cfg"
    chown ejabberd "$E/ejabberdctl.cfg"
    SERVER_FLAGS="erl $erl"
  }
  ejabberd_cfg
  # ejabberdctl runs the node as the ejabberd user. Called by root it does so through su, which
  # resets the open-files limit to 1024 (the node then stops accepting at ~1,090 sessions and
  # its acceptor spins on EMFILE); so switch user ourselves, keeping this shell's limit.
  chown -R ejabberd "$E"
  chmod o+x "$WORK"
  ectl=(setpriv --reuid ejabberd --regid ejabberd --init-groups env HOME=/var/lib/ejabberd ejabberdctl --config-dir "$E" --logs "$E/logs" --spool "$E/spool" --node herald_bench@localhost)
  # Erlang would start an epmd of its own (listening on every address) and leave it running
  # after `ejabberdctl stop`: start one on 127.0.0.1 ourselves and stop it by PID at the end,
  # unless one is already there.
  ejabberd_epmd=""
  if ! (exec 3<>/dev/tcp/127.0.0.1/4369) 2>/dev/null; then
    epmd -address 127.0.0.1 >"$E/epmd.log" 2>&1 &
    ejabberd_epmd=$!
    PIDS+=("$ejabberd_epmd")
    sleep 0.5
  fi
  ejabberd_restart() {
    [ -n "${pid:-}" ] && ejabberd_stop
    ejabberd_cfg
    "${SRV[@]}" "${ectl[@]}" foreground >>"$E/stdout" 2>&1 &
    wrapper=$!
    PIDS+=("$wrapper")
    wait_port $EJABBERD_IP $C2S_PORT_EJABBERD 60
    pid=$(descendant "$wrapper" beam.smp)
    PIDS+=("$pid")
    # The flags the VM really got (erl hands `+S 1:1` to beam.smp as `-S 1:1`), for the log.
    log "ejabberd beam.smp $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | grep -o -- '-S [0-9:]*\|-sbwt[a-z]* none' | tr '\n' ' ' || true)"
  }
  ejabberd_stop() {
    "${ectl[@]}" stop >/dev/null 2>&1 || true
    stop_pid "$pid"
    stop_pid "$wrapper"
    pid=""
  }
  pid=""
  ejabberd_restart
  # The same accounts as XEP-0227 (PIEFXIS) files; ejabberd stores SCRAM-SHA-1 (in Mnesia under
  # the spool dir, so they survive the restarts between scenario groups). In files of 1,000:
  # ejabberd hashes ~110 accounts/s here and ejabberdctl's call times out on one large file.
  log "ejabberd (beam pid $pid) up: importing $max_users accounts"
  # XEP-0227 files of 1,000 accounts each, with the storm's and the fan-out's subscriptions in
  # their rosters (bench/rosters.py); a large import takes longer than ejabberdctl's default
  # call timeout.
  python3 "$BENCH/rosters.py" piefxis "$E" "$DOMAIN" "$max_users" $(roster_args)
  for first in $(seq 1 1000 "$max_users"); do
    chown ejabberd "$E/users-$first.xml"
    "${ectl[@]}" --no-timeout import_piefxis "$E/users-$first.xml"
  done
  ejabberd_stop # the import ran on a server of the default placement
  for pl in $PLACEMENTS; do
    set_placement "$pl"
    run_scenarios ejabberd $EJABBERD_IP $C2S_PORT_EJABBERD
  done
  [ -z "$ejabberd_epmd" ] || stop_pid "$ejabberd_epmd"
fi

# ---- Herald cross-node chat (3-node cluster) ------------------------------------------------
if [ "$CROSS_NODE" = 1 ]; then
  set_placement pinned # all three nodes on CPU 1, as in the recorded run
  rm -rf "$WORK/c1" "$WORK/c2" "$WORK/c3"
  start_herald 1 127.0.0.41 "$WORK/c1" --bootstrap
  p1=$LAST_PID
  wait_port 127.0.0.41 17471 30
  start_herald 2 127.0.0.42 "$WORK/c2" --join 127.0.0.41:17470
  p2=$LAST_PID
  start_herald 3 127.0.0.43 "$WORK/c3" --join 127.0.0.41:17470
  p3=$LAST_PID
  wait_port 127.0.0.42 $C2S_PORT_HERALD 30
  wait_port 127.0.0.43 $C2S_PORT_HERALD 30
  sleep 3
  log "cluster up (pids $p1 $p2 $p3): adding users"
  herald_users 127.0.0.41 "$CHAT_SESSIONS"
  for r in $(seq "$CHAT_REPEAT"); do
    log "herald cluster: cross-node chat (run $r of $CHAT_REPEAT)"
    taskset -c 0 "$LOADGEN" chat --server 127.0.0.41:$C2S_PORT_HERALD \
      --server2 127.0.0.42:$C2S_PORT_HERALD --ca "$CA" --domain "$DOMAIN" --system herald \
      --server-pid "$p1" --users "$CHAT_SESSIONS" --rates "$CHAT_RATES" --duration "$CHAT_STEP" \
      --drain "$CHAT_DRAIN" --settle "$CHAT_SETTLE" --stop-after "$CHAT_STOP_AFTER" --placement pinned \
      --server-flags "3 nodes on CPU 1, $(herald_flags_note)" --json "$RESULTS/chat-cross-node.json"
  done
  stop_pid "$p1"; stop_pid "$p2"; stop_pid "$p3"
fi
# ---- control-plane isolation (SCENARIOS=isolation, Herald only) -----------------------------
# A 3-node cluster on 127.0.0.11-13 with the default ports (admin 7471, HTTP 9470, c2s 5222),
# chat across nodes 1 and 2 at RATE (default ISOLATION_FACTOR x this placement's Herald chat
# peak, pairs shape, median of the peak rows in results/chat.json) for DURATION s, while
# `herald --admin 127.0.0.11:7471 cluster status` runs once per second; every node's /metrics
# before and after. Rows: results/isolation.json.
isolation_rate() { # placement → msgs/s to offer, or nothing
  if [ -n "$RATE" ]; then echo "$RATE"; return; fi
  python3 - "$RESULTS/chat.json" "$1" "$ISOLATION_FACTOR" <<'EOF_PY'
import json, os, sys
path, placement, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = json.load(open(path)) if os.path.exists(path) else []
peaks = sorted(r["offered_rate"] for r in rows
               if r.get("system") == "herald" and r.get("scenario") == "chat"
               and (r.get("note") or "").startswith("peak") and r.get("offered_rate")
               and r.get("shape", "pairs") == "pairs" and r.get("placement") == placement)
if peaks:
    print(round(factor * peaks[(len(peaks) - 1) // 2]))
EOF_PY
}

if has_scenario isolation && [[ " $SYSTEMS " == *" herald "* ]]; then
  ISO_IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
  for pl in $PLACEMENTS; do
    set_placement "$pl"
    rate=$(isolation_rate "$pl")
    if [ -z "$rate" ]; then
      log "isolation ($pl): no Herald chat peak for this placement in $RESULTS/chat.json; set RATE"
      continue
    fi
    rm -rf "$WORK/iso1" "$WORK/iso2" "$WORK/iso3"
    start_herald_ports 1 "${ISO_IPS[0]}" "$WORK/iso1" --bootstrap
    i1=$LAST_PID
    wait_port "${ISO_IPS[0]}" 7471 30
    start_herald_ports 2 "${ISO_IPS[1]}" "$WORK/iso2" --join "${ISO_IPS[0]}:7470"
    i2=$LAST_PID
    start_herald_ports 3 "${ISO_IPS[2]}" "$WORK/iso3" --join "${ISO_IPS[0]}:7470"
    i3=$LAST_PID
    wait_port "${ISO_IPS[1]}" 5222 30
    wait_port "${ISO_IPS[2]}" 5222 30
    # Bounded wait (60 s) until all three are leader or follower in `cluster status`.
    for _ in $(seq 60); do
      members=$("$HERALD" -o json --admin "${ISO_IPS[0]}:7471" cluster status 2>/dev/null |
        grep -o '"role": *"\(leader\|follower\)"' | wc -l || true)
      [ "$members" = 3 ] && break
      sleep 1
    done
    # Then (bounded, 60 s) until the committed placement view holds all three nodes and every
    # node applied it: users signing in before that are homed on the nodes already in the view
    # and move when the others come in, which the re-homing counter would charge to the chat.
    placed=0
    for _ in $(seq 60); do
      placed=$("$HERALD" -o json --admin "${ISO_IPS[0]}:7471" cluster status 2>/dev/null |
        python3 -c 'import json, sys
s = json.load(sys.stdin)
p = s["placement"]
print(len(p["nodes"]) if all(n.get("placement_epoch") == p["epoch"] for n in s["nodes"]) else 0)' \
        2>/dev/null || echo 0)
      [ "$placed" = 3 ] && break
      sleep 1
    done
    log "isolation ($pl): cluster pids $i1 $i2 $i3, $members of 3 members up, $placed in the placement view; adding users"
    herald_users "${ISO_IPS[0]}" "$CHAT_SESSIONS" 7471
    log "isolation ($pl): chat at $rate msgs/s for $DURATION s, cluster status once per second"
    "${LGP[@]}" "$LOADGEN" isolation --server "${ISO_IPS[0]}:5222" --server2 "${ISO_IPS[1]}:5222" \
      --ca "$CA" --domain "$DOMAIN" --system herald --server-pid "$i1" --placement "$pl" \
      --server-flags "3 nodes, $(herald_flags_note)" --users "$CHAT_SESSIONS" \
      --rates "$rate" --duration "$DURATION" --drain "$CHAT_DRAIN" --settle "$CHAT_SETTLE" --stop-after 1 \
      --status-cmd "$HERALD --admin ${ISO_IPS[0]}:7471 cluster status" \
      --metrics "${ISO_IPS[0]}:9470,${ISO_IPS[1]}:9470,${ISO_IPS[2]}:9470" \
      --json "$RESULTS/isolation.json" || log "isolation ($pl): loadgen failed"
    stop_pid "$i1"; stop_pid "$i2"; stop_pid "$i3"
  done
fi
# ---- calendar burst (SCENARIOS=calendar, Herald only) ---------------------------------------
# One node; CAL_USERS calendar-enabled users on one caldav gateway (`loadgen caldav-serve` on
# 127.0.0.1:18443, certificate for localhost from the bench CA, Basic authentication), each
# watched by CAL_WATCH of the others; CAL_CHAT_SESSIONS more users chat. The generator writes
# the meeting start (a whole second, CAL_LEAD s after the setup) into the responder's start
# file; every user's meeting starts then. Rows: results/calendar.json.
CAL_USERS=${CAL_USERS:-10000}
CAL_WATCH=${CAL_WATCH:-8}
CAL_CHAT_SESSIONS=${CAL_CHAT_SESSIONS:-100}
CAL_CHAT_RATE=${CAL_CHAT_RATE:-1000}
CAL_POLL=${CAL_POLL:-30}
CAL_LEAD=${CAL_LEAD:-$((CAL_POLL + 15))}
CAL_PLACEMENT=${CAL_PLACEMENT:-pinned}
if has_scenario calendar && [[ " $SYSTEMS " == *" herald "* ]]; then
  set_placement "$CAL_PLACEMENT"
  if [ ! -f "$CERTS/localhost.crt" ]; then
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
      -keyout "$CERTS/localhost.key" -out "$CERTS/localhost.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$CERTS/ext-localhost"
    openssl x509 -req -in "$CERTS/localhost.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
      -CAcreateserial -days 30 -extfile "$CERTS/ext-localhost" -out "$CERTS/localhost.crt" 2>/dev/null
  fi
  cal_start=$WORK/calendar-start
  rm -f "$cal_start"
  "${LGP[@]}" "$LOADGEN" caldav-serve --listen 127.0.0.1:18443 --cert "$CERTS/localhost.crt" \
    --key "$CERTS/localhost.key" --credentials svc@example.test:calpw --start-file "$cal_start" \
    --limit 7200 2>"$WORK/caldav-serve.log" &
  cal_srv=$!
  PIDS+=("$cal_srv")
  rm -rf "$WORK/herald-cal"
  start_herald 1 $HERALD_IP "$WORK/herald-cal" --bootstrap --tls-ca "$CA" \
    --calendar-poll-seconds "$CAL_POLL"
  cal_pid=$LAST_PID
  wait_port $HERALD_IP 17471 30
  wait_port $HERALD_IP $C2S_PORT_HERALD 30
  wait_port 127.0.0.1 18443 30
  cal_total=$((CAL_USERS + CAL_CHAT_SESSIONS))
  log "calendar: herald pid $cal_pid; adding $cal_total users, calendar on for $CAL_USERS"
  "$HERALD" --admin $HERALD_IP:17471 calendar-gateway set-credentials --kind caldav \
    --account svc@example.test --password calpw --auth basic >/dev/null
  "$HERALD" --admin $HERALD_IP:17471 calendar-gateway add burst --kind caldav \
    --host localhost --port 18443 --path / >/dev/null
  herald_users $HERALD_IP "$cal_total"
  seq 1 "$CAL_USERS" | xargs -P 8 -I{} sh -c \
    "'$HERALD' --admin $HERALD_IP:17471 user update u{}@$DOMAIN --calendar-enabled true >/dev/null 2>&1 ||
     echo 'calendar for u{} failed' >&2"
  # Steady state, as at 10:00 on a working day: every user's gateway assignment is stored
  # (the node writes them at a bounded rate when calendars are first enabled). Bounded: 600 s.
  assigned=0
  for _ in $(seq 300); do
    assigned=$("$HERALD" -o json --admin $HERALD_IP:17471 calendar-gateway status 2>/dev/null |
      python3 -c 'import json, sys
print(sum(int(g.get("users_assigned", 0)) for g in json.load(sys.stdin).get("gateways", [])))' \
      2>/dev/null || echo 0)
    [ "$assigned" -ge "$CAL_USERS" ] && break
    sleep 2
  done
  log "calendar: $assigned of $CAL_USERS users have their gateway assignment stored"
  log "calendar: $CAL_USERS meetings in the same second, $CAL_WATCH watchers each, chat at $CAL_CHAT_RATE msgs/s"
  "${LGP[@]}" "$LOADGEN" calendar --server $HERALD_IP:$C2S_PORT_HERALD --ca "$CA" --domain "$DOMAIN" \
    --system herald --server-pid "$cal_pid" --password-prefix pw --user-prefix u \
    --placement "$CAL_PLACEMENT" --server-flags "$(herald_flags_note), --calendar-poll-seconds $CAL_POLL" \
    --users "$cal_total" --calendar-users "$CAL_USERS" --watch "$CAL_WATCH" \
    --chat-rate "$CAL_CHAT_RATE" --start-file "$cal_start" --lead "$CAL_LEAD" \
    --json "$RESULTS/calendar.json" || log "calendar: loadgen failed"
  curl -s "http://$HERALD_IP:19470/metrics" | grep -E "^herald_calendar_(polls_total|overlay_changes_total|tick_seconds)" >&2 || true
  tail -n 1 "$WORK/caldav-serve.log" >&2 || true
  stop_pid "$cal_pid"
  stop_pid "$cal_srv"
fi
log "done: results in $RESULTS"
