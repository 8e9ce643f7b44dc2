"""XEP-0191 blocking between users on different nodes: polite block, no delivery, block list,
unblock restores presence."""

from __future__ import annotations

from harness import Cluster
from xmpp_client import Clients, pick_nodes, run, subscribe

QUIET_WINDOW = 3.0


def test_block_and_unblock(cluster: Cluster) -> None:
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    na, nb = pick_nodes(cluster, alice, bob)

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, na)
            b = await xc.login(bob, bpw, nb)
            await a.online()
            await b.online()
            await subscribe(a, b)
            await subscribe(b, a)
            assert await b.blocked() == set(), "bob's block list should start empty"
            before = cluster.status()

            await b.block(alice)
            # Polite block: alice sees bob go offline.
            await a.expect_presence(bob, "unavailable from bob after he blocked alice",
                                    ptype="unavailable")
            assert await b.blocked() == {alice}, (
                f"bob's block list: expected {{{alice}}}, got {await b.blocked()}")
            # The block list is stored in the user-state Raft group, not the config group: the
            # config digest (which covers every stored config object) did not change.
            after = cluster.status()
            assert {n["config_digest"] for n in after["nodes"]} == {
                n["config_digest"] for n in before["nodes"]}, (before, after)
            def users_index(st: dict) -> int:
                return max(int(n["users_group"]["applied_index"]) for n in st["nodes"])
            assert users_index(after) > users_index(before), (before, after)
            assert after["users_leader_id"], after

            # alice's messages do not reach bob; alice may get an error or nothing.
            b.messages = type(b.messages)()
            for i in range(3):
                a.chat(bob, f"blocked {i}")
            await a.sync()
            leaked = [m["body"] for m in await b.drain(b.messages, QUIET_WINDOW)
                      if str(m["from"]).startswith(alice)]
            assert leaked == [], f"bob received messages from blocked alice: {leaked}"
            # bob's presence changes do not reach alice either.
            b.send_presence(pshow="away", pstatus="hidden from alice")
            await b.sync()
            seen = [str(p) for p in await a.drain(a.presences, QUIET_WINDOW)
                    if str(p["from"]).startswith(bob) and p["type"] != "unavailable"]
            assert seen == [], f"alice saw bob's presence while blocked: {seen}"

            await b.unblock(alice)
            assert await b.blocked() == set(), f"block list after unblock: {await b.blocked()}"
            await a.expect_presence(bob, "bob's current presence after he unblocked alice",
                                    show="away", status="hidden from alice")
            a.chat(bob, "hello again")
            got = await b.expect_messages(alice, 1)
            assert got[0]["body"] == "hello again", got[0]
    run(body())
