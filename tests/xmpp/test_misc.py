"""Directed presence to a full JID, iq ping to the server, disco#info features."""

from __future__ import annotations

from harness import Cluster
from xmpp_client import Clients, pick_nodes, run


def test_directed_presence_to_a_full_jid(cluster: Cluster) -> None:
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    na, nb = pick_nodes(cluster, alice, bob)

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, na)
            b = await xc.login(bob, bpw, nb)
            await a.online()
            await b.online()
            # No subscription: only directed presence reaches bob.
            a.send_presence(pto=str(b.boundjid), pshow="chat", pstatus="directed")
            p = await b.expect_presence(str(a.boundjid), "directed presence from alice",
                                        show="chat", status="directed")
            assert str(p["to"]) == str(b.boundjid), f"addressed to {p['to']}, not {b.boundjid}"
            # Going offline ends it: bob gets unavailable from alice's full JID.
            a.send_presence(pto=str(b.boundjid), ptype="unavailable")
            await b.expect_presence(str(a.boundjid), "directed unavailable", ptype="unavailable")
    run(body())


def test_ping_and_disco_info_of_the_server(cluster: Cluster) -> None:
    alice, apw = cluster.new_user("alice")

    async def body() -> None:
        async with Clients(cluster) as xc:
            for node in (1, 2, 3):
                a = await xc.login(alice, apw, node)
                rtt = await a.ping(cluster.domain)
                assert rtt >= 0, rtt
                features = await a.disco_features(cluster.domain)
                for need in ("urn:xmpp:blocking", "urn:xmpp:ping",
                             "http://jabber.org/protocol/disco#info"):
                    assert need in features, (
                        f"node {node}: disco#info of {cluster.domain} should list {need}; "
                        f"got {sorted(features)}")
                await a.logout()
    run(body())


def test_large_messages_cross_many_tls_records_intact(cluster: Cluster) -> None:
    """Stanzas larger than one TLS record (16 KiB) in both directions, and many small ones
    sent back to back (the server coalesces queued output into one record): all arrive intact
    and in order."""
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    na, nb = pick_nodes(cluster, alice, bob)
    big = "".join(chr(0x41 + i % 26) for i in range(200 * 1024))

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, na)
            b = await xc.login(bob, bpw, nb, direct_tls=True)
            await a.online()
            await b.online()
            a.chat(bob, "big1 " + big)
            b.chat(alice, "big2 " + big[::-1])
            small = [f"small {i}" for i in range(300)]
            for text in small:
                a.chat(bob, text)
            got_b = await b.expect_messages(alice, 1 + len(small))
            got_a = await a.expect_messages(bob, 1)
            assert got_b[0]["body"] == "big1 " + big, f"bob got {len(got_b[0]['body'])} chars"
            assert got_a[0]["body"] == "big2 " + big[::-1], f"alice got {len(got_a[0]['body'])}"
            assert [m["body"] for m in got_b[1:]] == small, "small messages out of order or lost"
    run(body())
