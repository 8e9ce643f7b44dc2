"""A cluster of real `herald` processes for the Python XMPP tests.

Mirrors `tests/src/lib.rs` (the Rust sandbox): each `Cluster` takes its own loopback subnet
`127.A.B.0/24` (A in 100..219, B in 1..250) and gives node `n` the address `127.A.B.n` with
Herald's default ports. Every wait is bounded (`wait_until`), every process is killed on
`stop()`, and each node's log stays in the cluster's directory (`log_tail()` for failures).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

DOMAIN = "example.test"
C2S_PORT = 5222
C2S_TLS_PORT = 5223
CLUSTER_PORT = 7470
ADMIN_PORT = 7471
HTTP_PORT = 9470

READY_TIMEOUT = 30.0
CLI_TIMEOUT = 30.0

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


class HarnessError(AssertionError):
    """A harness step failed (process start, CLI call, bounded wait)."""


def herald_bin() -> Path:
    """The herald binary: $HERALD_BIN, else $CARGO_TARGET_DIR/debug/herald, else
    <repo>/target/debug/herald. Fails with a clear message if it does not exist."""
    env = os.environ.get("HERALD_BIN")
    if env:
        path = Path(env)
    else:
        target = os.environ.get("CARGO_TARGET_DIR")
        base = Path(target) if target else REPO_ROOT / "target"
        if not base.is_absolute():
            base = REPO_ROOT / base
        path = base / "debug" / "herald"
    if not path.is_file():
        raise HarnessError(
            f"herald binary not found at {path}: build it with "
            "`cargo build -p herald-node --bin herald` or set HERALD_BIN"
        )
    return path


def wait_until(pred: Callable[[], Optional[T]], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Polls `pred` until it returns a value other than None/False, or raises HarnessError after
    `timeout` seconds naming `what` and the last exception `pred` raised (if any)."""
    deadline = time.monotonic() + timeout
    last = "condition never held"
    while True:
        try:
            value = pred()
            if value is not None and value is not False:
                return value
        except Exception as exc:  # noqa: BLE001 - reported in the timeout message
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}: {last}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Subnet allocation: an in-process set plus a lock file per subnet (held while the cluster
# lives), so that parallel test processes never pick the same 127.A.B.0/24.

_LOCK_DIR = Path(tempfile.gettempdir()) / "herald-pytest-subnets"
_used_lock = threading.Lock()
_used: set[tuple[int, int]] = set()


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _claim_subnet() -> tuple[tuple[int, int], Any]:
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(500):
        a, b = rng.randrange(100, 220), rng.randrange(1, 251)
        with _used_lock:
            if (a, b) in _used:
                continue
            fh = open(_LOCK_DIR / f"127.{a}.{b}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            if not all(_port_free(f"127.{a}.{b}.{n}", p)
                       for n in (1, 2, 3) for p in (CLUSTER_PORT, C2S_PORT)):
                fh.close()
                continue
            _used.add((a, b))
            return (a, b), fh
    raise HarnessError("no free 127.A.B.0/24 subnet found after 500 tries")


def _release_subnet(subnet: tuple[int, int], fh: Any) -> None:
    with _used_lock:
        _used.discard(subnet)
    try:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
    except OSError:
        pass


_live: "set[Cluster]" = set()


@atexit.register
def _kill_leftovers() -> None:
    for c in list(_live):
        c.stop()


# ---------------------------------------------------------------------------------------------


class Cluster:
    """N herald processes on one loopback subnet, driven like an operator would."""

    def __init__(self, workdir: Optional[Path] = None, domain: str = DOMAIN, *,
                 extra_args: Iterable[str] = (), admin_token: Optional[str] = None) -> None:
        """`extra_args` are appended to every node's `herald agent` command line; with
        `admin_token` every node requires it (`--admin-token`) and the CLI calls send it."""
        self._tmp = None
        self.extra_args = list(extra_args)
        self.admin_token = admin_token
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="herald-pytest-")
            workdir = Path(self._tmp.name)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.subnet, self._lock = _claim_subnet()
        self.procs: dict[int, subprocess.Popen] = {}
        self.cmdlines: dict[int, list[str]] = {}
        self._user_seq = 0
        self.bin = herald_bin()
        _live.add(self)

    # -- addresses ---------------------------------------------------------------------------

    def ip(self, node: int) -> str:
        """The IP every listener of node `node` binds to."""
        return f"127.{self.subnet[0]}.{self.subnet[1]}.{node}"

    def admin_addr(self, node: int) -> str:
        return f"{self.ip(node)}:{ADMIN_PORT}"

    def data_dir(self, node: int) -> Path:
        return self.dir / f"d{node}"

    def ca(self, node: int) -> Path:
        """The development CA node `node` wrote on first start (trust it to reach that node)."""
        return self.data_dir(node) / "tls" / "ca.pem"

    def log_path(self, node: int) -> Path:
        return self.dir / f"node{node}.log"

    @property
    def nodes(self) -> list[int]:
        """Every node started so far (running or not)."""
        return sorted(self.cmdlines)

    # -- processes ---------------------------------------------------------------------------

    def args(self, node: int, join: Optional[int]) -> list[str]:
        """The command line of node `node`: bootstrap when `join` is None, else join that node."""
        a = ["agent", "--node-id", str(node), "--bind", self.ip(node),
             "--data-dir", str(self.data_dir(node)), "--domain", self.domain]
        if join is None:
            a.append("--bootstrap")
        else:
            a += ["--join", self.ip(join)]
        if self.admin_token is not None:
            a += ["--admin-token", self.admin_token]
        return a + self.extra_args

    def _spawn(self, node: int, args: list[str]) -> None:
        log = open(self.log_path(node), "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info,raft=warn")
        for k in ("HERALD_ADMIN", "HERALD_ADMIN_TOKEN", "HERALD_CONFIG"):
            env.pop(k, None)
        try:
            self.procs[node] = subprocess.Popen(
                [str(self.bin), *args], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self.cmdlines[node] = args

    def start(self, node: int, join: Optional[int] = None) -> None:
        """Spawns node `node` (bootstrap if `join` is None); does not wait for readiness."""
        self._spawn(node, self.args(node, join))

    def wait_ready(self, node: int, timeout: float = READY_TIMEOUT) -> None:
        """Waits until node `node` answers 200 on /readyz."""
        def ready() -> bool:
            proc = self.procs.get(node)
            if proc is not None and proc.poll() is not None:
                raise HarnessError(f"node {node} exited with status {proc.returncode}")
            code, _ = self.http_get(node, "/readyz")
            return code == 200
        try:
            wait_until(ready, timeout, f"node {node} /readyz == 200")
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.log_tail(node)}") from None

    def start_cluster(self, size: int = 3) -> None:
        """Bootstraps node 1, joins 2..size through node 1, waits until all are ready and agree,
        and makes sure the test domain exists."""
        self.start(1)
        self.wait_ready(1)
        for n in range(2, size + 1):
            self.start(n, join=1)
        for n in range(2, size + 1):
            self.wait_ready(n)
        self.wait_converged(list(range(1, size + 1)))
        self.ensure_domain()

    def restart(self, node: int) -> None:
        """Starts node `node` again with exactly its previous command line; waits for ready."""
        if node not in self.cmdlines:
            raise HarnessError(f"node {node} was never started")
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            raise HarnessError(f"node {node} is still running (pid {proc.pid})")
        self._spawn(node, self.cmdlines[node])
        self.wait_ready(node)

    def kill9(self, node: int) -> None:
        """SIGKILLs node `node` and reaps it."""
        proc = self.procs.get(node)
        if proc is None:
            raise HarnessError(f"node {node} was never started")
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def terminate(self, node: int, timeout: float = 20.0) -> int:
        """SIGTERMs node `node` and returns its exit status (bounded wait)."""
        proc = self.procs[node]
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"node {node} did not exit within {timeout}s of SIGTERM") from None

    def is_running(self, node: int) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def running(self) -> list[int]:
        """Nodes whose process is alive."""
        return [n for n in self.nodes if self.is_running(n)]

    def stop(self) -> None:
        """Kills every node (idempotent) and frees the subnet."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self in _live:
            _live.discard(self)
            _release_subnet(self.subnet, self._lock)

    def cleanup(self) -> None:
        """stop() and remove the working directory if the cluster created it."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- logs --------------------------------------------------------------------------------

    def log_tail(self, node: int, lines: int = 40) -> str:
        try:
            text = self.log_path(node).read_text(errors="replace")
        except OSError as exc:
            return f"--- node {node}: no log ({exc}) ---"
        tail = "\n".join(text.splitlines()[-lines:])
        state = "running" if self.is_running(node) else "not running"
        return f"--- node {node} ({self.ip(node)}, {state}) log tail ---\n{tail}"

    def all_log_tails(self, lines: int = 40) -> str:
        return "\n".join(self.log_tail(n, lines) for n in self.nodes)

    # -- HTTP --------------------------------------------------------------------------------

    def http_get(self, node: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET http://IP:9470{path} on node `node`: (status code, body)."""
        url = f"http://{self.ip(node)}:{HTTP_PORT}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    # -- admin CLI ---------------------------------------------------------------------------

    def pick_admin(self, via: Optional[int]) -> int:
        if via is not None:
            return via
        alive = self.running()
        if not alive:
            raise HarnessError("no node is running")
        return alive[0]

    def cli_raw(self, node: Optional[int], *args: str,
                token: Any = ...) -> subprocess.CompletedProcess:
        """Runs `herald --admin IP:7471 ARGS` against `node` (first running node if None), with
        the cluster's admin token unless `token` names another (None: no token at all)."""
        node = self.pick_admin(node)
        env = dict(os.environ)
        for k in ("HERALD_ADMIN", "HERALD_ADMIN_TOKEN", "HERALD_USER_PASSWORD"):
            env.pop(k, None)
        token = self.admin_token if token is ... else token
        if token is not None:
            env["HERALD_ADMIN_TOKEN"] = token
        try:
            return subprocess.run(
                [str(self.bin), "--admin", self.admin_addr(node), *args],
                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=CLI_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f"`herald {' '.join(args)}` via node {node} took more than {CLI_TIMEOUT}s\n"
                f"{self.log_tail(node)}") from None

    def cli(self, node: Optional[int], *args: str) -> str:
        """Runs the CLI and requires exit status 0; returns stdout."""
        node = self.pick_admin(node)
        out = self.cli_raw(node, *args)
        if out.returncode != 0:
            raise HarnessError(
                f"`herald {' '.join(args)}` via node {node} failed (exit {out.returncode}): "
                f"{out.stderr.strip()}\n{self.log_tail(node)}")
        return out.stdout

    def cli_json(self, node: Optional[int], *args: str) -> Any:
        """Runs the CLI with `-o json` and parses its output."""
        text = self.cli(node, *args, "-o", "json")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"`herald {' '.join(args)} -o json` printed non-JSON ({exc}): "
                               f"{text!r}") from None

    def status(self, via: Optional[int] = None) -> dict:
        return self.cli_json(via, "cluster", "status")

    def leader(self, via: Optional[int] = None, timeout: float = 30.0) -> int:
        """The leader id as seen through `via`, once there is one among the running nodes
        (after a kill, waits for the survivors to elect a new leader)."""
        def get() -> Optional[int]:
            lid = int(self.status(via).get("leader_id") or 0)
            return lid if lid and self.is_running(lid) else None
        return wait_until(get, timeout, f"a live cluster leader (running: {self.running()})")

    def wait_converged(self, nodes: Iterable[int], via: Optional[int] = None,
                       timeout: float = 30.0) -> str:
        """Waits until `cluster status` shows exactly `nodes`, none unreachable, a leader, and
        one config digest and applied index everywhere, and the same of the user-state group;
        returns the config digest."""
        want = sorted(nodes)
        seen: dict = {}

        def check() -> Optional[str]:
            st = self.status(via)
            seen["last"] = st
            lst = st.get("nodes") or []
            if sorted(int(n.get("id", 0)) for n in lst) != want:
                return None
            if not st.get("leader_id"):
                return None
            if any(n.get("role") == "unreachable" for n in lst):
                return None
            digests = {n.get("config_digest") for n in lst}
            applied = {n.get("applied_index") for n in lst}
            if len(digests) != 1 or len(applied) != 1 or not next(iter(digests)):
                return None
            # Every node may be a home (the leader's placement view holds them all).
            placement = st.get("placement") or {}
            if sorted(int(n) for n in placement.get("nodes") or []) != want:
                return None
            if len({n.get("placement_epoch") for n in lst}) != 1:
                return None
            # The user-state group too: a leader, every node in it, one digest at one index.
            if not st.get("users_leader_id"):
                return None
            users = [n.get("users_group") or {} for n in lst]
            if any(u.get("role") not in ("leader", "follower") for u in users):
                return None
            if len({(u.get("digest"), u.get("applied_index")) for u in users}) != 1:
                return None
            return str(next(iter(digests)))
        try:
            return wait_until(check, timeout, f"cluster convergence on nodes {want}")
        except HarnessError as exc:
            raise HarnessError(f"{exc}; last status: {seen.get('last')}") from None

    def domains(self, via: Optional[int] = None) -> list[str]:
        v = self.cli_json(via, "domain", "list")
        if not isinstance(v, list):
            raise HarnessError(f"`domain list -o json` is not a list: {v!r}")
        return sorted(d.get("name", "") for d in v)

    def ensure_domain(self) -> None:
        """Makes sure the test domain exists (it should, from --domain at bootstrap)."""
        if self.domain not in self.domains():
            self.cli(None, "domain", "add", self.domain)
        names = self.domains()
        if self.domain not in names:
            raise HarnessError(f"domain {self.domain} missing after `domain add`: {names}")

    def add_user(self, jid: str, password: str, via: Optional[int] = None) -> None:
        """`herald user add JID --password PW`."""
        self.cli(via, "user", "add", jid, "--password", password)

    def new_user(self, name: str, via: Optional[int] = None) -> tuple[str, str]:
        """Adds a user with a unique localpart starting with `name`; returns (jid, password)."""
        self._user_seq += 1
        jid = f"{name}{self._user_seq}-{random.randrange(16**6):06x}@{self.domain}"
        password = f"pw-{name}-{random.randrange(16**8):08x}"
        self.add_user(jid, password, via)
        return jid, password

    def user(self, jid: str, via: Optional[int] = None) -> dict:
        """`herald user show JID -o json`."""
        return self.cli_json(via, "user", "show", jid)

    def home_node(self, jid: str, via: Optional[int] = None) -> int:
        """The node placement makes the home of `jid` (from `user show`)."""
        u = self.user(jid, via)
        home = int(u.get("home_node") or 0)
        if home not in self.cmdlines:
            raise HarnessError(f"`user show {jid}` reports home_node {home}, not a node: {u}")
        return home

    def __repr__(self) -> str:
        return f"Cluster(127.{self.subnet[0]}.{self.subnet[1]}.0/24, nodes={self.nodes})"
