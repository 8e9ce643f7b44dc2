"""Messages to an offline user are stored and delivered in order, with XEP-0203 delay, when
she comes online (initial presence)."""

from __future__ import annotations

from harness import Cluster
from xmpp_client import DELAY_NS, Clients, pick_nodes, run


def test_offline_messages_are_delivered_in_order_with_delay(cluster: Cluster) -> None:
    alice, apw = cluster.new_user("alice")
    carol, cpw = cluster.new_user("carol")
    na, nc = pick_nodes(cluster, alice, carol)

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, na)
            await a.online()
            for i in range(3):
                a.chat(carol, f"while you were out {i}")
            await a.sync()
            errors = await a.drain(a.message_errors, 1.0)
            assert errors == [], f"sending to offline carol bounced: {[str(e) for e in errors]}"

            c = await xc.login(carol, cpw, nc)
            await c.online()
            got = await c.expect_messages(alice, 3, timeout=15)
            bodies = [m["body"] for m in got]
            assert bodies == [f"while you were out {i}" for i in range(3)], (
                f"expected the 3 offline messages in order, got {bodies}")
            for m in got:
                delay = m.xml.find(f"{{{DELAY_NS}}}delay")
                assert delay is not None and delay.get("stamp"), (
                    f"offline message without <delay xmlns='{DELAY_NS}' stamp=...>: {m}")
            # Delivered once: a second login gets nothing more.
            await c.logout()
            c2 = await xc.login(carol, cpw, nc)
            await c2.online()
            again = [m["body"] for m in await c2.drain(c2.messages, 2.0)]
            assert again == [], f"offline messages were delivered twice: {again}"
    run(body())
