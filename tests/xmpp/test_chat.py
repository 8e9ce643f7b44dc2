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
