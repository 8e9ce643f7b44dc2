"""A rolling restart (each node in turn: SIGTERM, start again, wait until ready and converged,
as `kubectl rollout restart` does with the StatefulSet) loses no message and no config write.

A sender keeps writing to a user who is offline throughout (her messages go to her replicated
offline queue, wherever her home is at that moment) through a node that stays up, before,
while and after each node is down, and then through the restarted node; a user is added while
each node is down. At the end she signs in and gets every message once, in the order sent, and
every node knows every added user."""

from __future__ import annotations

import asyncio

from harness import Cluster
from xmpp_client import Clients, run, wait_for

BATCH = 10


def test_rolling_restart_loses_no_message_and_no_config_write(cluster: Cluster) -> None:
    sam, spw = cluster.new_user("sam")
    rita, rpw = cluster.new_user("rita")
    nodes = list(cluster.nodes)
    sent: list[str] = []
    added: list[str] = []

    def send_batch(node: int, tag: str) -> None:
        async def body() -> None:
            async with Clients(cluster) as xc:
                s = await xc.login(sam, spw, node)
                for i in range(BATCH):
                    text = f"{tag} #{i}"
                    s.chat(rita, text)
                    sent.append(text)
                # The node has taken every message (in order) once the ping is answered.
                await s.sync()
                errors = await s.drain(s.message_errors, 0.5)
                assert errors == [], (
                    f"sending via node {node} ({tag}) bounced: {[str(e) for e in errors]}")
        run(body())

    for k in nodes:
        other = next(n for n in nodes if n != k)
        send_batch(other, f"before node {k} stops")
        code = cluster.terminate(k)
        assert code == 0, f"node {k} exited with {code} on SIGTERM"
        send_batch(other, f"while node {k} is down")
        jid = f"added{k}@{cluster.domain}"
        cluster.add_user(jid, "pw-added", via=other)
        added.append(jid)
        cluster.restart(k)
        cluster.wait_ready(k)
        cluster.wait_converged(nodes, via=other)
        send_batch(k, f"after node {k} restarted")

    async def receive() -> None:
        async with Clients(cluster) as xc:
            r = await xc.login(rita, rpw, nodes[0])
            await r.online()
            got = await r.expect_messages(sam, len(sent), timeout=30)
            bodies = [m["body"] for m in got]
            missing = [b for b in sent if b not in bodies]
            assert not missing, f"lost in the rolling restart: {missing}"
            assert bodies == sent, f"out of order: {bodies}"
            extra = [m["body"] for m in await r.drain(r.messages, 2.0)]
            assert extra == [], f"delivered twice: {extra}"
    run(receive())

    for n in nodes:
        for jid in added:
            assert cluster.user(jid, via=n)["jid"] == jid, f"node {n} lost the write of {jid}"


def test_user_on_a_stopping_node_gets_every_message(cluster: Cluster) -> None:
    """Olga is online on the node that stops; Sam writes to her all along from another node.
    Her stream ends with `system-shutdown`; she signs in again elsewhere. No message vanishes:
    each one reached her (before the stop, or from her offline queue after) or came back to Sam
    as an error. When the stopping node is her home, it tells its peers it is leaving before its
    Raft loop stops, so her stanzas move to her next home; a straggler after that would bounce
    (sender told) — the test prints how many were delivered before, after, and bounced."""
    sam, spw = cluster.new_user("sam")
    olga, opw = cluster.new_user("olga")
    stopping = 2
    other = 1
    home = cluster.home_node(olga)

    async def body() -> None:
        async with Clients(cluster) as xc:
            s = await xc.login(sam, spw, other)
            o = await xc.login(olga, opw, stopping)
            await o.online()
            sent: list[str] = []
            ids: dict[str, str] = {}

            async def write() -> None:
                for i in range(60):
                    text = f"to olga #{i}"
                    m = s.make_message(mto=olga, mbody=text, mtype="chat")
                    m["id"] = f"olga-{i}"
                    ids[m["id"]] = text
                    m.send()
                    sent.append(text)
                    await asyncio.sleep(0.03)
                await s.sync()

            writer = asyncio.create_task(write())
            await asyncio.sleep(0.5)
            code = await asyncio.to_thread(cluster.terminate, stopping)
            assert code == 0, f"node {stopping} exited with {code} on SIGTERM"
            await wait_for(o.closed.wait(), 10, "olga's stream to end")
            assert "system-shutdown" in " ".join(o.stream_errors), (
                f"olga's stream should end with system-shutdown: {o.stream_errors} {o.trace}")
            await wait_for(writer, 20, "sam to finish writing")
            errors = await s.drain(s.message_errors, 0.5)
            bounced = {ids[e["id"]] for e in errors if e["id"] in ids}
            strays = [str(e) for e in errors if e["id"] not in ids]
            assert not strays, f"errors for messages Sam did not send: {strays}"

            got: list[str] = []
            while not o.messages.empty():
                got.append(o.messages.get_nowait()["body"])
            before = len(got)
            o2 = await xc.login(olga, opw, other)
            await o2.online()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while any(t not in got and t not in bounced for t in sent) \
                    and loop.time() < deadline:
                got += [m["body"] for m in await o2.drain(o2.messages, 0.5)]
            missing = [t for t in sent if t not in got and t not in bounced]
            assert not missing, (
                f"vanished when olga's node stopped ({before} arrived before the stop, "
                f"{len(got) - before} after, {len(bounced)} bounced to Sam): {missing}")
            print(f"\n{before} delivered before the stop, {len(got) - before} after, "
                  f"{len(bounced)} bounced (her home was node {home}; node {stopping} stopped)")
    run(body())
