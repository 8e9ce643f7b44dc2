#!/usr/bin/env python3
"""SIP through the routing node: a 3-node Herald cluster, SIPp as the federated SIP peer,
`loadgen sip-users` as the Herald users (real TLS XMPP clients). Started by `bench/sip.sh`
(which builds and sets the knobs); stdlib only.

Scenarios (rows appended to $RESULTS/sip.json):
- sip-message: SIPp sends page-mode MESSAGEs (RFC 3428) over one TCP connection to the routing
  node (node 1) at each rate of SIP_RATES for SIP_STEP s; every recipient is homed on node 2
  or 3 and logged in there. Measured: SIP response time (SIPp's rtd, MESSAGE → 200), end-to-end
  delivery latency (SIPp's wall clock in the body → receipt at the XMPP client), messages lost
  (answered 200 but never delivered), failed transactions, CPU of SIPp and of every node.
- sip-subscribe: SIP_WATCHERS SIP watchers (SIPp calls) subscribe at SUB_RATE/s to
  SIP_PUBLISHERS Herald users homed on nodes 2/3 that already allow them (a setup run, not
  measured, went pending → approved by the user's client → unsubscribed, so the rule is
  stored). Measured: SUBSCRIBE → 200 (SIPp rtd), SUBSCRIBE → first NOTIFY (the probe to the
  user's home and back), achieved subscribe rate.
- sip-notify-fanout: the publishers change status ROUNDS times, ROUND_INTERVAL s apart; every
  watcher's NOTIFY carries the status; latency = publisher's send (wall clock) → NOTIFY at SIPp,
  plus the time until all watchers had the round.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = os.environ
HERALD = ENV["HERALD"]
LOADGEN = ENV["LOADGEN"]
WORK = Path(ENV.get("WORK", "/tmp/hb-sip"))
RESULTS = Path(ENV.get("RESULTS", "bench/results"))
RATES = [int(r) for r in ENV.get("SIP_RATES", "500,1000,2000,4000").split(",") if r]
STEP = float(ENV.get("SIP_STEP", "10"))
DRAIN = float(ENV.get("SIP_DRAIN", "5"))
RECIPIENTS = int(ENV.get("SIP_RECIPIENTS", "50"))
WATCHERS = int(ENV.get("SIP_WATCHERS", "1000"))
PUBLISHERS = int(ENV.get("SIP_PUBLISHERS", "1"))
SUB_RATE = int(ENV.get("SUB_RATE", "200"))
ROUNDS = int(ENV.get("ROUNDS", "5"))
ROUND_INTERVAL = float(ENV.get("ROUND_INTERVAL", "2"))
SCENARIOS = ENV.get("SIP_SCENARIOS", "message subscribe").split()
PLACEMENT = ENV.get("PLACEMENT", "unpinned")

DOMAIN = "example.test"
SIP_DOMAIN = "sip.test"
IPS = ["127.0.0.51", "127.0.0.52", "127.0.0.53"]
SIPP_IP = "127.0.0.60"
UAS_PORT = 5090
C2S, SIP, CLUSTER, ADMIN, HTTP = 15222, 15060, 17470, 17471, 19470
PORTS = ["--c2s-port", str(C2S), "--c2s-tls-port", "15223", "--s2s-port", "15269",
         "--sip-port", str(SIP), "--sip-tls-port", "15061", "--cluster-port", str(CLUSTER),
         "--admin-port", str(ADMIN), "--http-port", str(HTTP)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] sip: {msg}", file=sys.stderr, flush=True)


def wait_until(pred, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"sip: timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def cli(node: int, *args: str, check: bool = True) -> str:
    p = subprocess.run([HERALD, "-o", "json", "--admin", f"{IPS[node - 1]}:{ADMIN}", *args],
                       capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise SystemExit(f"sip: herald {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def listening(ip: str, port: int) -> bool:
    import socket
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == want and line.split()[3] == "0A"
                   for line in f.readlines()[1:])


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def metrics(node: int) -> str:
    with urllib.request.urlopen(f"http://{IPS[node - 1]}:{HTTP}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines()
                  if l.startswith("model name")), "unknown CPU")
    cores = sum(1 for l in cpuinfo.splitlines() if l.startswith("processor"))
    mem = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
               if l.startswith("MemTotal:"))
    return f"{cores} cores, {mem / 1024 / 1024:.1f} GiB, {model}"


def pct(samples: list[float], q: float) -> float:
    """Nearest rank, as loadgen's `percentiles`."""
    s = sorted(samples)
    return round(s[min(len(s) - 1, max(0, int(-(-q * len(s) // 1)) - 1))], 3)


def lat(samples_ms: list[float], prefix: str = "") -> dict:
    if not samples_ms:
        return {}
    return {f"{prefix}p50_ms": pct(samples_ms, 0.5), f"{prefix}p90_ms": pct(samples_ms, 0.9),
            f"{prefix}p99_ms": pct(samples_ms, 0.99), f"{prefix}max_ms": round(max(samples_ms), 3)}


class Cluster:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.certs = WORK / "certs"

    def make_certs(self) -> None:
        c = self.certs
        if (c / f"{DOMAIN}.crt").exists():
            return
        c.mkdir(parents=True, exist_ok=True)
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "30", "-subj", "/CN=bench CA", "-keyout", str(c / "ca.key"),
            "-out", str(c / "ca.pem"))
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={DOMAIN}", "-keyout", str(c / f"{DOMAIN}.key"), "-out",
            str(c / f"{DOMAIN}.csr"))
        (c / "ext").write_text(f"subjectAltName=DNS:{DOMAIN}\nbasicConstraints=CA:FALSE\n")
        run("openssl", "x509", "-req", "-in", str(c / f"{DOMAIN}.csr"), "-CA", str(c / "ca.pem"),
            "-CAkey", str(c / "ca.key"), "-CAcreateserial", "-days", "30", "-extfile",
            str(c / "ext"), "-out", str(c / f"{DOMAIN}.crt"))

    def start(self) -> None:
        self.make_certs()
        for n, ip in enumerate(IPS, 1):
            d = WORK / f"n{n}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            extra = ["--bootstrap"] if n == 1 else ["--join", f"{IPS[0]}:{CLUSTER}"]
            cmd = [HERALD, "agent", "--node-id", str(n), "--bind", ip, "--data-dir", str(d),
                   "--domain", DOMAIN, "--tls-cert", str(self.certs / f"{DOMAIN}.crt"),
                   "--tls-key", str(self.certs / f"{DOMAIN}.key"), "--log-level", "warn",
                   *PORTS, *extra]
            if PLACEMENT == "pinned":
                cmd = ["taskset", "-c", "1", *cmd, "--workers", "1"]
            self.procs.append(subprocess.Popen(cmd, stdout=open(d / "log", "w"),
                                               stderr=subprocess.STDOUT))
            wait_until(lambda: listening(ip, ADMIN), 60, f"node {n} admin port")

        def three() -> bool:
            try:
                st = json.loads(cli(1, "cluster", "status", check=False) or "{}")
            except json.JSONDecodeError:
                return False
            roles = [x.get("role") for x in st.get("nodes") or []]
            return sum(r in ("leader", "follower") for r in roles) == 3
        wait_until(three, 60, "3 cluster members")
        for ip in IPS:
            wait_until(lambda: listening(ip, C2S), 30, f"c2s on {ip}")
        log(f"cluster up: pids {[p.pid for p in self.procs]}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def add_users(n: int) -> dict[str, int]:
    """Adds u1..un (password pwI); returns each user's home node."""
    def add(i: int) -> tuple[str, int]:
        u = f"u{i}"
        cli(1, "user", "add", f"{u}@{DOMAIN}", "--password", f"pw{i}", check=False)
        home = int(json.loads(cli(1, "user", "show", f"{u}@{DOMAIN}")).get("home_node") or 0)
        return u, home
    with ThreadPoolExecutor(8) as ex:
        return dict(ex.map(add, range(1, n + 1)))


def configure() -> None:
    cli(1, "sip-domain", "add", SIP_DOMAIN, "--type", "generic-sip")
    cli(1, "acl", "add", "sipp", "--kind", "ip", "--pattern", SIPP_IP)
    # The peer's static route (as tests/xmpp/test_sip.py): SIPp's server side. Out-of-dialog
    # requests would use it; NOTIFYs follow their dialog (the watcher's Contact).
    cli(1, "static-route", "add", "sipp", "--domain", SIP_DOMAIN, "--next-hop", SIPP_IP,
        "--port", str(UAS_PORT), "--transport", "tcp")
    cli(1, "routing-node", "set", "1")

    def everywhere() -> bool:
        # As tests/xmpp/harness.py's wait_converged: one config digest and applied index on
        # all three nodes, a leader, none unreachable.
        try:
            st = json.loads(cli(1, "cluster", "status", check=False) or "{}")
        except json.JSONDecodeError:
            return False
        nodes = st.get("nodes") or []
        return (len(nodes) == 3 and bool(st.get("leader_id"))
                and not any(n.get("role") == "unreachable" for n in nodes)
                and len({n.get("config_digest") for n in nodes}) == 1
                and len({n.get("applied_index") for n in nodes}) == 1)
    wait_until(everywhere, 30, "the SIP settings applied on every node")
    time.sleep(1)


class Users:
    """`loadgen sip-users`: the Herald users, driven on stdin."""

    def __init__(self, accounts: list[tuple[str, int]], certs: Path) -> None:
        path = WORK / "accounts.txt"
        path.write_text("".join(f"{u} pw{u[1:]} {IPS[h - 1]}:{C2S}\n" for u, h in accounts))
        cmd = [LOADGEN, "sip-users", "--server", f"{IPS[0]}:{C2S}", "--ca",
               str(certs / "ca.pem"), "--domain", DOMAIN, "--accounts", str(path),
               "--source-base", "127.0.2.1", "--concurrency", "20"]
        if PLACEMENT == "pinned":
            cmd = ["taskset", "-c", "0", *cmd]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1)
        ready = self.read()
        if ready.get("ready") != len(accounts):
            raise SystemExit(f"sip: XMPP logins: {ready}")
        log(f"{len(accounts)} XMPP users logged in on their home nodes")

    def read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit("sip: loadgen sip-users exited")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(20)
        except (BrokenPipeError, subprocess.TimeoutExpired, ValueError):
            self.p.kill()


def sipp(scenario: str, csv: Path | None, extra: list[str], timeout: float, name: str,
         subst: dict[str, str] | None = None, server: bool = False) -> dict:
    """Starts SIPp with `scenario` (its @NAME@ placeholders replaced from `subst`): as a client
    (one TCP connection to the routing node, from port 5080) or, with `server`, listening on
    UAS_PORT; returns the handle `sipp_wait` takes."""
    d = WORK / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    text = (HERE / scenario).read_text()
    for k, v in {"UAS_PORT": str(UAS_PORT), **(subst or {})}.items():
        text = text.replace(f"@{k}@", v)
    sf = d / scenario
    sf.write_text(text)
    cmd = ["sipp", "-sf", str(sf), *(["-inf", str(csv)] if csv else []), "-t", "t1",
           "-i", SIPP_IP, "-p", str(UAS_PORT if server else 5080), "-nostdin",
           "-timeout", f"{int(timeout)}s", "-timeout_error",
           "-trace_stat", "-stf", str(d / "stat.csv"), "-fd", "1", "-trace_rtt",
           "-rtt_freq", "1", "-trace_err", "-error_file", str(d / "err.log"), "-trace_logs",
           "-log_file", str(d / "log.txt"), "-max_recv_loops", "10000", *extra,
           *(["-trace_msg", "-message_file", str(d / "msg.txt")] if ENV.get("SIPP_TRACE") else []),
           *([] if server else [f"{IPS[0]}:{SIP}"])]
    if PLACEMENT == "pinned":
        cmd = ["taskset", "-c", "0", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"proc": p, "dir": d, "t0": t0, "before": before, "timeout": timeout}


def sipp_wait(run: dict, grace: float | None = None) -> dict:
    p = run["proc"]
    try:
        p.wait(run["timeout"] + 30 if grace is None else grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    wall = time.monotonic() - run["t0"]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (run["before"].ru_utime + run["before"].ru_stime)
    d = run["dir"]
    stat = (d / "stat.csv").read_text(errors="replace").splitlines() if (d / "stat.csv").exists() else []
    counters: dict = {}
    if len(stat) >= 2:
        head, last = stat[0].split(";"), stat[-1].split(";")
        counters = dict(zip(head, last))
    rtd: dict[str, list[float]] = {}
    for f in d.glob("*_rtt.csv"):
        for line in f.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                try:
                    rtd.setdefault(parts[2].strip(), []).append(float(parts[1]))
                except ValueError:
                    pass
    logs = (d / "log.txt").read_text(errors="replace").splitlines() if (d / "log.txt").exists() else []
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    return {"rc": p.returncode, "wall": wall, "cpu_s": cpu, "counters": counters, "rtd": rtd,
            "logs": logs, "stderr": err[-2000:], "dir": str(d)}


def count(counters: dict, name: str) -> int:
    try:
        return int(counters.get(f"{name}(C)", 0))
    except ValueError:
        return 0


class CpuWindow:
    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.ticks = [cpu_ticks(p) for p in pids]

    def pcts(self) -> list[float]:
        wall = time.monotonic() - self.t0
        hz = os.sysconf("SC_CLK_TCK")
        return [round(100.0 * (cpu_ticks(p) - t) / hz / wall, 2)
                for p, t in zip(self.pids, self.ticks)]


def base_row(scenario: str, sessions: int) -> dict:
    return {"system": "herald", "scenario": scenario, "sessions": sessions,
            "machine": MACHINE, "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "placement": PLACEMENT,
            "server_flags": "3 nodes (routing node 1), "
            + ("all on CPU 1, --workers 1" if PLACEMENT == "pinned" else "default workers")}


def append(rows: list[dict]) -> None:
    path = RESULTS / "sip.json"
    old = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else []
    path.write_text(json.dumps(old + rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r), flush=True)


def message_ladder(cluster: Cluster, users: Users, recipients: list[str]) -> None:
    csv = WORK / "recipients.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{u};s{i % 100 + 1}\n"
                                              for i, u in enumerate(recipients)))
    rows = []
    for rate in RATES:
        tag = f"m{rate}"
        calls = int(rate * STEP)
        log(f"MESSAGE step: {rate}/s for {STEP:g} s ({calls} messages)")
        cpu = CpuWindow(cluster.pids() + [users.p.pid])
        run = sipp("message.xml", csv, ["-r", str(rate), "-m", str(calls), "-l",
                                        str(max(100, rate * 5)), "-set", "tag", tag],
                   STEP + 40, f"message-{rate}")
        res = sipp_wait(run)
        ok = count(res["counters"], "SuccessfulCall")
        failed = count(res["counters"], "FailedCall")
        deadline = time.monotonic() + DRAIN
        while True:
            got = users.ask(f"report {tag}")["latency"]
            if got["count"] >= ok or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        pcts = cpu.pcts()
        receiver_pct = pcts.pop()
        e2e = got
        sip_rt = []
        for line in res["logs"]:
            f = line.split()
            if len(f) == 6 and f[0] == "R":
                sent_s = int(float(f[2])) + int(float(f[3])) / 1e6
                got_s = int(float(f[4])) + int(float(f[5])) / 1e6
                sip_rt.append(1000 * (got_s - sent_s))
        row = base_row("sip-message", len(recipients))
        row.update({
            "offered_rate": rate,
            "msgs_per_sec": round(ok / max(res["wall"], 1e-9), 1),
            "p50_ms": e2e["p50_ms"], "p90_ms": e2e["p90_ms"], "p99_ms": e2e["p99_ms"],
            "max_ms": e2e["max_ms"],
            **lat(sip_rt, "sip_response_"),
            "sent": calls, "answered_200": ok, "sip_failed": failed,
            "delivered": got["count"], "lost": max(0, ok - got["count"]),
            "generator_cpu_pct": round(100.0 * res["cpu_s"] / max(res["wall"], 1e-9), 2),
            "server_cpu_pct": round(sum(pcts), 2), "server_cpu_pct_each": pcts,
            "receiver_cpu_pct": receiver_pct,
            "server_cpu_us_per_msg": round(sum(pcts) / 100.0 * (time.monotonic() - cpu.t0)
                                           * 1e6 / max(got["count"], 1), 2),
            "note": ("SIPp MESSAGE over one TCP connection to the routing node (node 1), "
                     "recipients homed on nodes 2/3 and logged in there; p50..max = end to end "
                     "(SIPp wall clock in the body -> XMPP client), sip_response_* = MESSAGE -> "
                     "200 at SIPp (wall clock, logged); msgs_per_sec = 200 OKs / SIPp wall time; server CPU = sum of "
                     "the 3 nodes over the step and drain; generator = SIPp, receiver = loadgen "
                     "sip-users"),
        })
        if res["rc"] != 0:
            row["sipp_exit"] = res["rc"]
            row["sipp_stderr"] = res["stderr"][-300:]
        rows.append(row)
        log(f"  rate {rate}: {ok} ok, {failed} failed, delivered {got['count']}, "
            f"e2e p50/p99 {e2e['p50_ms']}/{e2e['p99_ms']} ms, SIP 200 p50/p99 "
            f"{row.get('sip_response_p50_ms')}/{row.get('sip_response_p99_ms')} ms, "
            f"server CPU {pcts}, SIPp {row['generator_cpu_pct']} %")
        time.sleep(1)
    append(rows)


LOG_RE = re.compile(r"^(\w+) (\S+) ([\d.]+) ([\d.]+)(?: (.*))?$")


def stamps(lines: list[str]) -> list[tuple[str, str, float, str]]:
    """`KIND CALL-ID SECS USECS [REST]` log lines → (kind, Call-ID, epoch seconds, rest)."""
    out = []
    for line in lines:
        m = LOG_RE.match(line.strip())
        if m:
            out.append((m.group(1), m.group(2),
                        int(float(m.group(3))) + int(float(m.group(4))) / 1e6, m.group(5) or ""))
    return out


def notifies(path: Path) -> list[tuple[str, float, str]]:
    """NOTIFYs in a SIPp message trace → (Call-ID, wall clock of receipt, whole message)."""
    out = []
    text = path.read_text(errors="replace") if path.exists() else ""
    for block in re.split(r"\n-{20,} ", text)[1:]:
        head, _, rest = block.partition("\n")
        if "message received" not in rest[:80]:
            continue
        msg = rest.split("\n", 1)[1] if "\n" in rest else ""
        if not msg.lstrip().startswith("NOTIFY "):
            continue
        m = re.search(r"^Call-ID:\s*(\S+)", msg, re.M | re.I)
        try:
            day, clock = head.strip().split()[:2]
            secs, _, frac = clock.partition(".")
            t = time.mktime(time.strptime(f"{day} {secs}", "%Y-%m-%d %H:%M:%S")) + float("0." + frac)
        except ValueError:
            continue
        if m:
            out.append((m.group(1), t, msg))
    return out


def subscribe(cluster: Cluster, users: Users, publishers: list[str]) -> None:
    csv = WORK / "watchers.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(
        f"{publishers[i % len(publishers)]};w{i + 1}\n" for i in range(WATCHERS)))
    sub_secs = WATCHERS / SUB_RATE
    # The NOTIFY receiver for both runs below: one call per dialog, ends at `terminated`.
    uas = sipp("notify-uas.xml", None, ["-aa", "-trace_msg", "-message_file", str(WORK / "notify-uas.msg")],
               3 * sub_secs + ROUNDS * ROUND_INTERVAL + 180, "notify-uas", server=True)
    wait_until(lambda: listening(SIPP_IP, UAS_PORT), 10, "SIPp's NOTIFY receiver")

    # Setup (not measured): pending (202), approved by the user's client, unsubscribed.
    log(f"SUBSCRIBE setup: {WATCHERS} watchers go pending, get approved, unsubscribe")
    res = sipp_wait(sipp("subscribe-setup.xml", csv, ["-r", str(SUB_RATE), "-m", str(WATCHERS),
                                                       "-l", str(WATCHERS)],
                         sub_secs + 60, "subscribe-setup", {"HOLD_MS": "3000"}))
    ok = count(res["counters"], "SuccessfulCall")
    log(f"  setup: {ok} of {WATCHERS} watchers unsubscribed after 202, rc {res['rc']}")
    if ok != WATCHERS:
        log(f"  setup incomplete: {res['stderr'][-500:]} (see {res['dir']})")
    # Every request and every approval is one Raft write of the user's whole state, one at a
    # time per user: wait until the client approved all and the home's writes went quiet.
    t0 = time.monotonic()
    wait_until(lambda: users.ask("approved")["approved"] >= WATCHERS, 300,
               "the user's client to approve every watcher", every=1)
    writes = lambda: sum(metric(metrics(n), "herald_user_state_writes_total")  # noqa: E731
                         for n in (1, 2, 3))
    last = [writes(), time.monotonic()]

    def quiet() -> bool:
        w = writes()
        if w != last[0]:
            last[:] = [w, time.monotonic()]
        return time.monotonic() - last[1] >= 3
    wait_until(quiet, 300, "the user state writes to go quiet", every=0.5)
    log(f"  setup: {WATCHERS} approvals stored {time.monotonic() - t0:.1f} s after the last "
        f"SUBSCRIBE was answered ({int(last[0])} user state writes in the run so far)")
    wait_until(lambda: metric(metrics(1), "herald_sip_subscriptions", direction="inbound") == 0,
               30, "no inbound subscription left after the setup")

    # Measured: subscribe (already allowed), first NOTIFY, then ROUNDS status changes.
    log(f"SUBSCRIBE: {WATCHERS} allowed watchers at {SUB_RATE}/s, then {ROUNDS} status changes")
    m0 = metrics(1)
    cpu = CpuWindow(cluster.pids())
    hold = sub_secs + 5 + ROUNDS * ROUND_INTERVAL + 5
    run = sipp("subscribe.xml", csv, ["-r", str(SUB_RATE), "-m", str(WATCHERS), "-l",
                                      str(WATCHERS)],
               sub_secs + hold + 60, "subscribe", {"HOLD_MS": str(int(hold * 1000))})
    t_sub = time.monotonic()
    wait_until(lambda: metric(metrics(1), "herald_sip_subscriptions", direction="inbound",
                              state="active") >= WATCHERS or run["proc"].poll() is not None,
               sub_secs + 30, "every watcher active", every=0.25)
    all_active = time.monotonic() - t_sub
    sub_cpu = cpu.pcts()
    time.sleep(3)  # the first NOTIFYs (each waits for the probe's answer, at most 2 s)
    sent = {}
    for r in range(1, ROUNDS + 1):
        sent[r] = users.ask(f"presence {r}")["sent_epoch_us"] / 1e6
        time.sleep(ROUND_INTERVAL)
    res = sipp_wait(run)
    try:
        wait_until(lambda: metric(metrics(1), "herald_sip_subscriptions",
                                  direction="inbound") == 0, 30, "no inbound subscription left")
    except SystemExit as e:
        log(f"  {e} (continuing)")
    time.sleep(1)
    # SIPp's "quit" (twice: the second one does not wait for the calls, which never end).
    for _ in range(2):
        if uas["proc"].poll() is None:
            uas["proc"].send_signal(signal.SIGUSR1)
            time.sleep(2)
    sipp_wait(uas, grace=10)
    all_cpu = cpu.pcts()
    m1 = metrics(1)
    sub_t = {c: t for k, c, t, _ in stamps(res["logs"]) if k == "SUB"}
    ok_t = {c: t for k, c, t, _ in stamps(res["logs"]) if k == "OK"}
    first_t: dict[str, float] = {}
    rounds: dict[int, dict[str, float]] = {}
    for c, t, body in notifies(WORK / "notify-uas.msg"):
        if c not in sub_t:
            continue  # the setup's dialogs
        first_t.setdefault(c, t)
        m = re.search(r"sipbench (\d+) ", body)
        if m:
            rounds.setdefault(int(m.group(1)), {}).setdefault(c, t)
    first_ms = [1000 * (first_t[c] - sub_t[c]) for c in first_t]
    sub_rt = [1000 * (ok_t[c] - sub_t[c]) for c in ok_t if c in sub_t]
    span = (max(ok_t.values()) - min(sub_t.values())) if ok_t and sub_t else 0
    row = base_row("sip-subscribe", len(publishers))
    row.update({
        "offered_rate": SUB_RATE, "watchers": WATCHERS,
        "msgs_per_sec": round(len(ok_t) / span, 1) if span else None,
        **lat(sub_rt), **lat(first_ms, "first_notify_"),
        "answered_200": len(ok_t), "first_notify": len(first_t),
        "lost": WATCHERS - len(first_t),
        "sip_failed": count(res["counters"], "FailedCall"),
        "all_active_after_s": round(all_active, 2),
        "server_cpu_pct": round(sum(sub_cpu), 2), "server_cpu_pct_each": sub_cpu,
        "note": ("SIPp watchers (one TCP connection to the routing node; the NOTIFYs come to a "
                 "second SIPp on the Contact address, over the connection Herald opens) "
                 "subscribe to users homed on nodes 2/3 who already allow them; p50..max = "
                 "SUBSCRIBE -> 200, first_notify_* = SUBSCRIBE -> first NOTIFY (SIPp wall "
                 "clocks, logged); msgs_per_sec = 200 OKs / (last 200 - first SUBSCRIBE); "
                 "lost = watchers without a first NOTIFY; server CPU over the subscribe phase"),
    })
    rows = [row]
    per, all_had = [], []
    for r, t0 in sent.items():
        g = rounds.get(r, {})
        per += [1000 * (t - t0) for t in g.values()]
        if len(g) == WATCHERS:
            all_had.append(1000 * (max(g.values()) - t0))
    missing = sum(WATCHERS - len(rounds.get(r, {})) for r in sent)
    d_notify = metric(m1, "herald_sip_presence_requests_total", method="NOTIFY") - metric(
        m0, "herald_sip_presence_requests_total", method="NOTIFY")
    fr = base_row("sip-notify-fanout", len(publishers))
    fr.update({
        "watchers": WATCHERS, "rounds": ROUNDS,
        "msgs_per_sec": round(len(per) / (ROUNDS * ROUND_INTERVAL), 1) if per else None,
        **lat(per), "delivered": len(per), "lost": missing,
        **({f"all_watchers_{k}": v for k, v in lat(all_had).items()}),
        "rounds_all_watchers_had": len(all_had),
        "notify_requests_node1": int(d_notify),
        "failures_node1": {r: int(metric(m1, "herald_sip_failures_total", reason=r)
                                  - metric(m0, "herald_sip_failures_total", reason=r))
                           for r in ("queue_full", "stray_response", "forward")},
        "server_cpu_pct": round(sum(all_cpu), 2), "server_cpu_pct_each": all_cpu,
        "note": ("each publisher (XMPP, homed on node 2/3) changes its status ROUNDS times; "
                 "latency = the publisher's send (wall clock) -> NOTIFY with that status at "
                 "SIPp, through the publisher's home -> routing node 1 -> SIPp; all_watchers_* "
                 "= until the last watcher had the round; lost = NOTIFYs of a round never seen; "
                 "msgs_per_sec = NOTIFYs / (rounds x interval); server CPU over the whole run"),
    })
    rows.append(fr)
    for r in rows:
        if res["rc"] != 0:
            r["sipp_exit"] = res["rc"]
    log(f"  subscribe: {len(ok_t)} x 200, first NOTIFY {len(first_t)}, 200 p50/p99 "
        f"{row.get('p50_ms')}/{row.get('p99_ms')} ms, first NOTIFY p50/p99 "
        f"{row.get('first_notify_p50_ms')}/{row.get('first_notify_p99_ms')} ms "
        f"(all active after {all_active:.1f} s)")
    log(f"  fan-out: {len(per)} NOTIFYs of {WATCHERS * ROUNDS}, p50/p99 {fr.get('p50_ms')}/"
        f"{fr.get('p99_ms')} ms, all watchers p99 {fr.get('all_watchers_p99_ms')} ms, "
        f"missing {missing}, SIPp rc {res['rc']}")
    append(rows)


MACHINE = machine()


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    cluster = Cluster()
    users = None
    try:
        cluster.start()
        need = RECIPIENTS + PUBLISHERS
        homes = add_users(max(3 * need, need + 20))
        away = [u for u, h in sorted(homes.items(), key=lambda x: int(x[0][1:])) if h in (2, 3)]
        if len(away) < need:
            raise SystemExit(f"sip: only {len(away)} users homed on nodes 2/3, need {need}")
        recipients, publishers = away[:RECIPIENTS], away[RECIPIENTS:need]
        log(f"recipients homed on node 2: {sum(homes[u] == 2 for u in recipients)}, "
            f"node 3: {sum(homes[u] == 3 for u in recipients)}; publishers "
            f"{[(u, homes[u]) for u in publishers]}")
        configure()
        users = Users([(u, homes[u]) for u in recipients + publishers], cluster.certs)
        time.sleep(2)
        if "message" in SCENARIOS:
            message_ladder(cluster, users, recipients)
        if "subscribe" in SCENARIOS:
            subscribe(cluster, users, publishers)
        for n in (1, 2, 3):
            m = metrics(n)
            log(f"node {n}: herald_sip_failures_total "
                f"{metric(m, 'herald_sip_failures_total'):g}, RSS "
                f"{Path(f'/proc/{cluster.pids()[n - 1]}/status').read_text().split('VmRSS:')[1].split()[0]} kB")
    finally:
        if users:
            users.close()
        cluster.stop()


if __name__ == "__main__":
    main()
