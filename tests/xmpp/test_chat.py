"""Two users on different nodes (at least one away from its home node): subscriptions both
ways, presence changes, and 50 messages each way in order."""

from __future__ import annotations

from harness import Cluster
from xmpp_client import Clients, bare, pick_nodes, run, subscribe

N_MESSAGES = 50


def test_subscriptions_presence_and_chat_across_nodes(cluster: Cluster) -> None:
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    na, nb = pick_nodes(cluster, alice, bob)

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, na)
            b = await xc.login(bob, bpw, nb)
            assert await a.online() == {}, "a new user's roster should be empty"
            assert await b.online() == {}, "a new user's roster should be empty"

            await subscribe(a, b)
            await subscribe(b, a)
            for c, other in ((a, bob), (b, alice)):
                items = await c.roster_items()
                assert items.get(other, {}).get("subscription") == "both", (
                    f"{c.user}'s roster: expected {other} with subscription='both', got {items}")
                assert items[other].get("ask") is None, f"{c.user}: pending ask left: {items}"

            # alice's presence changes reach bob (on another node).
            a.send_presence(pshow="away", pstatus="at lunch")
            p = await b.expect_presence(alice, "alice away", show="away", status="at lunch")
            assert str(p["from"]) == str(a.boundjid), (
                f"presence should come from alice's full JID {a.boundjid}, got {p['from']}")
            a.send_presence()
            await b.expect_presence(alice, "alice available again", ptype="available", show="")
            # ...and bob's reach alice.
            b.send_presence(pshow="dnd", pstatus="in a meeting")
            await a.expect_presence(bob, "bob dnd", show="dnd", status="in a meeting")

            # 50 messages each way, interleaved sending; each side receives them in order.
            for i in range(N_MESSAGES):
                a.chat(bob, f"a->b {i}")
                b.chat(alice, f"b->a {i}")
            got_b = await b.expect_messages(alice, N_MESSAGES, timeout=30)
            got_a = await a.expect_messages(bob, N_MESSAGES, timeout=30)
            for got, label in ((got_b, "a->b"), (got_a, "b->a")):
                bodies = [m["body"] for m in got]
                assert bodies == [f"{label} {i}" for i in range(N_MESSAGES)], (
                    f"{label}: expected bodies 0..{N_MESSAGES - 1} in order, got {bodies}")
                assert all(m["type"] == "chat" for m in got), [m["type"] for m in got]
            assert bare(got_b[0]["to"]) == bob and str(got_b[0]["from"]) == str(a.boundjid), (
                f"unexpected addressing: {got_b[0]}")

            # alice disconnects: bob gets unavailable from her full JID.
            full = str(a.boundjid)
            await a.logout()
            p = await b.expect_presence(full, "alice unavailable after her disconnect",
                                        ptype="unavailable")
            assert str(p["from"]) == full
    run(body())


def _batches(cluster: Cluster, path: str) -> tuple[float, float]:
    """(batches, recipients) of `herald_presence_batch_recipients{path}` summed over nodes."""
    from s2s_fed import scrape
    count = total = 0.0
    for n in (1, 2, 3):
        m = scrape(cluster, n)
        count += sum(v for lab, v in m.get("herald_presence_batch_recipients_count", [])
                     if lab.get("path") == path)
        total += sum(v for lab, v in m.get("herald_presence_batch_recipients_sum", [])
                     if lab.get("path") == path)
    return count, total


def test_a_status_change_reaches_watchers_on_other_nodes_in_one_message_per_node(
        cluster: Cluster) -> None:
    """alice's watchers are homed on all three nodes: her status change reaches each exactly
    once, and the watchers homed away from her home node are sent one message per node."""
    alice, apw = cluster.new_user("alice")
    watchers = [cluster.new_user(f"w{i}") for i in range(9)]
    home = cluster.home_node(alice)
    homes = {w: cluster.home_node(w) for w, _ in watchers}
    away = [w for w in homes if homes[w] != home]
    assert away, f"all nine watchers homed with alice on node {home}: {homes}"

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, 1)
            # Subscription requests go to resources that asked for the roster (RFC 6121).
            assert await a.online() == {}, "a new user's roster should be empty"
            ws = [await xc.login(w, pw, 1 + i % 3) for i, (w, pw) in enumerate(watchers)]
            for w in ws:
                assert await w.online() == {}, f"{w.user}: a new user's roster should be empty"
            for w in ws:
                await subscribe(w, a)
            before = _batches(cluster, "node")
            a.send_presence(pshow="xa", pstatus="one message per node")
            for w in ws:
                await w.expect_presence(alice, f"{w.user} to get alice's change", show="xa",
                                        status="one message per node")
            for w in ws:
                again = [p for p in await w.drain(w.presences, 0.3)
                         if bare(p["from"]) == alice]
                assert not again, f"{w.user} got alice's presence again: {again}"
            after = _batches(cluster, "node")
            assert after[0] - before[0] == len({homes[w] for w in away}), (before, after, homes)
            assert after[1] - before[1] == len(away), (before, after, homes)
    run(body())
