"""A user's home node paused (SIGSTOP: a GC pause, a VM freeze) while the user carries on
through another node: nothing written meanwhile is lost when the paused node comes back and
becomes her home again. The resumed node's user actor held the state from before the pause; it
must take the newer stored state instead of serving the stale one or writing over the other
node's changes (issue "One owner per user": the first of its fault rounds, as one test)."""

from __future__ import annotations

import signal
import time

from harness import Cluster, wait_until
from xmpp_client import Clients, LoginFailed, async_wait_until, run

PAUSE_AT_LEAST = 12.0


def test_writes_made_while_the_home_node_was_paused_survive_its_return(cluster: Cluster) -> None:
    erin, pw = cluster.new_user("erin")
    amy, _ = cluster.new_user("amy")
    ben, _ = cluster.new_user("ben")
    cid, _ = cluster.new_user("cid")
    mal, _ = cluster.new_user("mal")
    home = cluster.home_node(erin)
    via = next(n for n in (1, 2, 3) if n != home)

    async def before() -> None:
        async with Clients(cluster) as xc:
            c = await xc.login(erin, pw, via)
            await c.online()
            await c.roster_set(amy, "Amy")
            assert amy in await c.roster_items()
            await c.logout()
    run(before())

    proc = cluster.procs[home]
    proc.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        async def meanwhile() -> None:
            async with Clients(cluster) as xc:
                async def write_elsewhere():
                    c = xc.client(erin, pw, via)
                    try:
                        await c.login(cluster.ip(via), timeout=8)
                        await c.roster_set(ben, "Ben", timeout=5)
                    except (LoginFailed, AssertionError, TimeoutError) as exc:
                        await c.logout()
                        raise AssertionError(str(exc)) from None
                    return c
                c = await async_wait_until(write_elsewhere, 30.0,
                                           f"a roster write through node {via} while node "
                                           f"{home} is paused")
                await c.block(mal)
                items = await c.roster_items()
                assert amy in items and ben in items, f"roster while paused: {items}"
                await c.logout()
        run(meanwhile())
        left = PAUSE_AT_LEAST - (time.monotonic() - paused_at)
        if left > 0:
            time.sleep(left)
    finally:
        proc.send_signal(signal.SIGCONT)

    cluster.wait_ready(home)
    # Placement gives erin back to the resumed node (all three agree before going on).
    wait_until(lambda: all(cluster.home_node(erin, via=n) == home for n in (1, 2, 3)), 30.0,
               f"every node to place {erin} on node {home} again")

    async def after() -> None:
        async with Clients(cluster) as xc:
            c = await xc.login(erin, pw, via)
            items = await c.online()
            assert amy in items and ben in items, (
                f"after node {home} came back, the roster should hold {amy} and {ben} "
                f"(the second written while it was paused), got {sorted(items)}")
            assert await c.blocked() == {mal}, "the block written while paused was lost"
            await c.roster_set(cid, "Cid")
            items = await c.roster_items()
            assert {amy, ben, cid} <= set(items), (
                f"a write after the return must add to, not replace, what was stored: "
                f"{sorted(items)}")
            await c.logout()
        # Read back through another session: what is stored, not one actor's memory.
        async with Clients(cluster) as xc:
            c = await xc.login(erin, pw, home)
            items = await c.roster_items()
            assert {amy, ben, cid} <= set(items), sorted(items)
            assert await c.blocked() == {mal}
    run(after())
