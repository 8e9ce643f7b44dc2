"""Fault rounds on a 3-node cluster: one owner per user, and no acknowledged write lost.

Each round picks a node (every node in turn, the Raft leader among them) and a fault — kill -9
then restart; SIGSTOP for longer than the liveness limit then SIGCONT (a GC pause, a VM freeze:
the node comes back believing it still owns its users); or a partition (nftables drops every
packet between the node's address and the other nodes' both ways while it keeps running and
keeps its clients) — and while the fault lasts,
real clients on the surviving nodes write: a roster item and a block-list entry for `wes`, and a
message from `sam` to one of three users who stay offline (their homes spread over the nodes).
A write counts as acknowledged when the server answered it (IQ result) or, for a message, when
it did not bounce. After each round the cluster must converge (one config digest, every node
back in the placement view).

At the end: every acknowledged roster item and block entry is there; every acknowledged
message reaches its recipient exactly once and in order; and the nodes' own records of who
wrote each user's data (`user show -o json`: `owners`, node and placement epoch per home, from
the replicated store) show one owner per epoch, epochs only growing — the state machine refuses
a write from a node that is not the user's home in the current epoch, so a second owner would
appear there as a refused write, never as data.

`HERALD_FAULT_ROUNDS` sets the number of rounds (default 21; CI runs the default). Partitions
need `nft` and the right to use it (root, as CI runs); one-way and minority partitions are
covered by the deterministic simulation (`cluster/tests/ownership_sim.rs`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import pytest

from harness import Cluster, wait_until
from xmpp_client import Clients, run

ROUNDS = int(os.environ.get("HERALD_FAULT_ROUNDS", "21"))
KINDS = ("kill", "stop", "partition")


def nft(script: str) -> None:
    """Runs an nftables script (as root, or through sudo)."""
    exe = shutil.which("nft") or "/usr/sbin/nft"
    cmd = [exe, "-f", "-"] if os.geteuid() == 0 else ["sudo", "-n", exe, "-f", "-"]
    res = subprocess.run(cmd, input=script, text=True, capture_output=True, timeout=10)
    assert res.returncode == 0, f"nft failed ({res.returncode}): {res.stderr.strip()}\n{script}"


class Partition:
    """Drops every packet between `victim`'s address and the other nodes' (both ways). Nodes
    connect to each other from their own address; clients (from 127.0.0.1) are unaffected."""

    def __init__(self, cluster: Cluster, victim: int, nodes: list[int]) -> None:
        self.table = f"herald_part_{os.getpid()}"
        me = cluster.ip(victim)
        others = ", ".join(cluster.ip(n) for n in nodes if n != victim)
        self.script = (
            f"table inet {self.table} {{\n"
            f"  chain out {{\n"
            f"    type filter hook output priority 0; policy accept;\n"
            f"    ip saddr {me} ip daddr {{ {others} }} drop\n"
            f"    ip saddr {{ {others} }} ip daddr {me} drop\n"
            f"  }}\n"
            f"}}\n")

    def __enter__(self) -> "Partition":
        nft(self.script)
        return self

    def heal(self) -> None:
        nft(f"delete table inet {self.table}\n")
@pytest.fixture(autouse=True)
def routing_debug_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The nodes log each routed item handed back and each message handed on again or dropped
    (debug level), so that a failed round leaves its evidence in the logs printed on failure."""
    monkeypatch.setenv("RUST_LOG", "info,raft=warn,herald_cluster::routing=debug,"
                       "herald_node::xmpp::users=debug,herald_node::xmpp::deliver=debug,"
                       "herald_node::xmpp::registry=debug")


# Longer than the leader's liveness limit (2.5 s), so the view changes while the node is out.
OUT_FOR = 3.5
OP_TIMEOUT = 6.0


@pytest.mark.timeout(60 + 30 * ROUNDS)
def test_fault_rounds_lose_no_acknowledged_write_and_keep_one_owner(cluster: Cluster) -> None:
    nodes = list(cluster.nodes)
    wes, wpw = cluster.new_user("wes")
    sam, spw = cluster.new_user("sam")
    rcpts = [cluster.new_user(f"rita{i}") for i in range(3)]
    acked_roster: list[str] = []
    acked_blocks: list[str] = []
    acked_msgs: dict[str, list[str]] = {r: [] for r, _ in rcpts}
    table: list[str] = []

    async def writes(xc: Clients, r: int, via: int) -> tuple[bool, bool, object]:
        """The round's writes; returns (roster acked, block acked, sam's client)."""
        contact = f"contact{r}@{cluster.domain}"
        blocked = f"blocked{r}@elsewhere.test"
        rcpt = rcpts[r % len(rcpts)][0]
        ok = [False, False]
        w = await xc.login(wes, wpw, via)
        s = await xc.login(sam, spw, via)
        # Bounded retries: a write refused while its user moves is not acknowledged; the
        # client tries again as a user would.
        for _ in range(4):
            try:
                await w.roster_set(contact, f"Contact {r}", timeout=OP_TIMEOUT)
                ok[0] = True
                break
            except Exception:  # noqa: BLE001 (IqError/IqTimeout: not acknowledged)
                await asyncio.sleep(0.5)
        for _ in range(4):
            try:
                await w.block(blocked, timeout=OP_TIMEOUT)
                ok[1] = True
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.5)
        s.chat(rcpt, f"round {r}")
        sent_at = time.monotonic()
        await s.sync()
        await w.logout()
        if ok[0]:
            acked_roster.append(contact)
        if ok[1]:
            acked_blocks.append(blocked)
        return ok[0], ok[1], (s, sent_at)

    for r in range(ROUNDS):
        leader = cluster.leader()
        victim = nodes[r % len(nodes)] if r % 4 != 3 else leader
        via = next(n for n in nodes if n != victim)
        kind = KINDS[r % len(KINDS)]
        started = time.monotonic()
        cut = Partition(cluster, victim, nodes) if kind == "partition" else None

        async def round_() -> tuple[bool, bool, bool]:
            async with Clients(cluster) as xc:
                if kind == "kill":
                    cluster.kill9(victim)
                elif kind == "stop":
                    cluster.procs[victim].send_signal(signal.SIGSTOP)
                else:
                    cut.__enter__()
                try:
                    roster_ok, block_ok, (s, sent_at) = await writes(xc, r, via)
                    left = OUT_FOR - (time.monotonic() - started)
                    if left > 0:
                        await asyncio.sleep(left)
                finally:
                    if kind == "kill":
                        await asyncio.to_thread(cluster.restart, victim)
                    elif kind == "stop":
                        cluster.procs[victim].send_signal(signal.SIGCONT)
                    else:
                        cut.heal()
                await asyncio.to_thread(cluster.wait_ready, victim)
                await asyncio.to_thread(cluster.wait_converged, nodes, via, 45.0)
                # The message counts as acknowledged only if no error came back for it within
                # 11 s of sending it (a write that waited on a leader change is answered in 10).
                errors = await s.drain(s.message_errors, max(0.5, sent_at + 11.0 - time.monotonic()))
                if not errors:
                    acked_msgs[rcpts[r % len(rcpts)][0]].append(f"round {r}")
                await s.logout()
                return roster_ok, block_ok, not errors

        ok = run(round_())
        digest = cluster.wait_converged(nodes, via=via, timeout=45.0)
        table.append(f"| {r + 1} | {kind} | {victim}{' (leader)' if victim == leader else ''} "
                     f"| {'yes' if ok[0] else 'no'} / {'yes' if ok[1] else 'no'} / "
                     f"{'yes' if ok[2] else 'no'} | {time.monotonic() - started:.1f} s "
                     f"| {digest[:12]} |")

    print("\n| round | fault | node | acked roster / block / message | round time | digest |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(table))
    assert acked_roster and acked_blocks and any(acked_msgs.values()), (
        "no write was acknowledged at all: the rounds tested nothing")

    async def verify() -> None:
        async with Clients(cluster) as xc:
            w = await xc.login(wes, wpw, nodes[0])
            roster = await w.roster_items()
            missing = [c for c in acked_roster if c not in roster]
            assert not missing, f"acknowledged roster items lost: {missing}; roster: {roster}"
            blocked = await w.blocked()
            missing = [b for b in acked_blocks if b not in blocked]
            assert not missing, f"acknowledged blocks lost: {missing}; blocked: {blocked}"
            for rcpt, pw in rcpts:
                want = acked_msgs[rcpt]
                c = await xc.login(rcpt, pw, nodes[1])
                await c.online()
                got = await c.expect_messages(sam, len(want), timeout=30)
                bodies = [m["body"] for m in got]
                extra = await c.drain(c.messages, 1.0)
                bodies += [m["body"] for m in extra if m["body"]]
                assert bodies == want, (
                    f"{rcpt}: acknowledged messages must arrive once each, in order: "
                    f"want {want}, got {bodies}")
    try:
        run(verify())
    except AssertionError:
        # The evidence for a lost or repeated message: every node's full log lines about the
        # recipients and sam, every warning, and the recipients' owner histories.
        names = [sam.split("@")[0]] + [r.split("@")[0] for r, _ in rcpts]
        for n in nodes:
            lines = [ln for ln in cluster.log_path(n).read_text(errors="replace").splitlines()
                     if " WARN " in ln or " ERROR " in ln or any(x in ln for x in names)]
            print(f"--- node {n}: {len(lines)} lines about the recipients, and warnings ---")
            print("\n".join(lines[-400:]))
            for rcpt, _ in rcpts:
                print(f"node {n}: {rcpt} owners: {cluster.user(rcpt, via=n).get('owners')}")
        raise

    # The nodes' own records of who wrote each user's data: one owner per epoch.
    for jid in [wes, sam] + [r for r, _ in rcpts]:
        for n in nodes:
            owners = cluster.user(jid, via=n).get("owners") or []
            epochs = [int(o["epoch"]) for o in owners]
            assert epochs == sorted(set(epochs)), (
                f"{jid}: two homes wrote in one placement epoch, or epochs went back "
                f"(node {n}'s record): {owners}")
    # And every node agrees on the config.
    cluster.wait_converged(nodes)
    # No node served a user without the right to: every node's refusals of stale writes were
    # answered, not swallowed (the counter exists; a non-zero value is allowed, it is the fence
    # doing its job).
    for n in nodes:
        code, text = cluster.http_get(n, "/metrics")
        assert code == 200 and "herald_placement_epoch" in text, f"node {n} metrics: {code}"


def test_placement_view_shown_and_follows_a_dead_node(cluster: Cluster) -> None:
    """`cluster status` shows the committed placement view; the leader takes a dead node out
    (and says why) and puts it back once it answers again."""
    st = cluster.status()
    view = st.get("placement") or {}
    assert sorted(view.get("nodes") or []) == [1, 2, 3], st
    epoch = int(view.get("epoch") or 0)
    assert epoch >= 1, st
    victim = next(n for n in (1, 2, 3) if n != cluster.leader())
    via = next(n for n in (1, 2, 3) if n != victim)
    cluster.kill9(victim)
    try:
        def without() -> dict | None:
            v = (cluster.status(via).get("placement") or {})
            return v if victim not in (v.get("nodes") or []) else None
        v = wait_until(without, 15.0, f"the placement view to drop node {victim}")
        assert int(v["epoch"]) > epoch and f"node {victim} silent" in v.get("reason", ""), v
        text = cluster.cli(via, "cluster", "status")
        assert "placement: epoch" in text and f"node {victim} silent" in text, text
    finally:
        cluster.restart(victim)
    cluster.wait_converged([1, 2, 3])
    v = cluster.status().get("placement") or {}
    assert f"node {victim} is back" in v.get("reason", ""), v
