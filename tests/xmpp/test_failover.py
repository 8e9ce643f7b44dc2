"""kill -9 of a user's home node: within 20 s she logs in through another node with her roster
and block list intact (they are replicated, not kept on the dead node)."""

from __future__ import annotations

from harness import Cluster
from xmpp_client import Clients, LoginFailed, async_wait_until, run

FAILOVER_TIMEOUT = 20.0


def test_login_after_home_node_is_killed(cluster: Cluster) -> None:
    carol, cpw = cluster.new_user("carol")
    dave, _ = cluster.new_user("dave")
    mallory, _ = cluster.new_user("mallory")
    home = cluster.home_node(carol)
    others = [n for n in (1, 2, 3) if n != home]

    async def before() -> None:
        async with Clients(cluster) as xc:
            # Set up through the home node itself, so the dying node holds the session.
            c = await xc.login(carol, cpw, home)
            await c.online()
            await c.roster_set(dave, "Dave")
            await c.block(mallory)
            items = await c.roster_items()
            assert dave in items and items[dave]["name"] == "Dave", (
                f"roster set did not stick before the failure: {items}")
            assert await c.blocked() == {mallory}
    run(before())

    cluster.kill9(home)

    async def after() -> None:
        async with Clients(cluster) as xc:
            attempts: list[str] = []

            async def try_login():
                node = others[len(attempts) % len(others)]
                c = xc.client(carol, cpw, node)
                try:
                    await c.login(cluster.ip(node), timeout=8)
                except LoginFailed as exc:
                    attempts.append(f"node {node}: {exc.stage} {exc.condition or ''}".strip())
                    raise
                return c
            try:
                c = await async_wait_until(try_login, FAILOVER_TIMEOUT,
                                           f"carol to log in via {others} after node {home} died")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n  attempts: {attempts}") from None
            items = await c.online()
            assert dave in items and items[dave]["name"] == "Dave", (
                f"after failover carol's roster should still hold {dave} (name Dave), got {items}")
            blocked = await c.blocked()
            assert blocked == {mallory}, (
                f"after failover carol's block list should be {{{mallory}}}, got {blocked}")
            await c.sync()
    run(after())
