"""c2s login: STARTTLS on 5222, direct TLS on 5223, SCRAM; wrong passwords fail cleanly and
repeated failures are limited without hurting a later good login."""

from __future__ import annotations

import pytest

from harness import Cluster
from xmpp_client import Clients, LoginFailed, async_wait_until, run

#: SASL conditions accepted once the server starts limiting repeated failures.
LIMITED_CONDITIONS = {"not-authorized", "temporary-auth-failure"}


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls-5222", "direct-tls-5223"])
def test_login_over_tls_on_every_node(cluster: Cluster, direct_tls: bool) -> None:
    jid, pw = cluster.new_user("alice")

    async def body() -> None:
        async with Clients(cluster) as xc:
            for node in (1, 2, 3):
                c = await xc.login(jid, pw, node, direct_tls=direct_tls)
                assert c.is_encrypted(), f"session on node {node} is not over TLS"
                assert c.boundjid.bare == jid, (
                    f"node {node}: expected bound JID {jid}/<resource>, got {c.boundjid}")
                assert c.boundjid.resource, f"node {node}: bound JID has no resource"
                await c.sync()
                await c.logout()
    run(body())


def test_wrong_password_is_not_authorized_and_gets_no_session(cluster: Cluster) -> None:
    jid, pw = cluster.new_user("alice")

    async def body() -> None:
        async with Clients(cluster) as xc:
            c = xc.client(jid, pw + "-wrong", 1)
            with pytest.raises(LoginFailed) as err:
                await c.login(cluster.ip(1))
            assert err.value.stage == "auth" and err.value.condition == "not-authorized", (
                f"expected SASL <failure><not-authorized/>, got stage={err.value.stage} "
                f"condition={err.value.condition}: {err.value}")
            assert "session_start" not in c.trace, (
                f"a session started despite the wrong password: {c.trace}")
            # An unknown user fails the same way (no user enumeration).
            u = xc.client(f"nobody-here@{cluster.domain}", pw, 1)
            with pytest.raises(LoginFailed) as err2:
                await u.login(cluster.ip(1))
            assert (err2.value.stage, err2.value.condition) == ("auth", "not-authorized"), (
                f"unknown user: expected not-authorized, got {err2.value}")
    run(body())


def test_a_user_added_through_one_node_signs_in_through_the_others_at_once(
        cluster: Cluster) -> None:
    """`user add` returns once the leader applied the write; a follower may apply it a moment
    later. A login that reaches such a follower first waits for it to catch up (a read
    barrier) instead of refusing an account that exists (CI saw `not-authorized` once)."""
    async def body() -> None:
        async with Clients(cluster) as xc:
            for i in range(6):
                via = 1 + i % 3
                jid, pw = cluster.new_user(f"fresh{i}", via=via)
                for node in (n for n in (1, 2, 3) if n != via):
                    c = await xc.login(jid, pw, node)
                    assert c.boundjid.bare == jid, f"node {node}: bound {c.boundjid}"
                    await c.logout()
    run(body())


def test_repeated_wrong_passwords_are_limited_then_a_good_login_works(cluster: Cluster) -> None:
    jid, pw = cluster.new_user("alice")

    async def body() -> None:
        async with Clients(cluster) as xc:
            conditions = []
            for i in range(8):
                c = xc.client(jid, f"{pw}-wrong-{i}", 2)
                try:
                    await c.login(cluster.ip(2), timeout=20)
                except LoginFailed as exc:
                    assert "session_start" not in c.trace, f"attempt {i}: session started"
                    # Once limited, the server may refuse with a SASL condition, a stream
                    # error (policy-violation) or by closing; it must never let us in.
                    ok = (exc.stage == "auth" and exc.condition in LIMITED_CONDITIONS) or (
                        exc.stage == "stream-error" and exc.condition == "policy-violation") or (
                        i > 0 and exc.stage == "disconnected")
                    assert ok, (f"attempt {i}: expected SASL failure "
                                f"{sorted(LIMITED_CONDITIONS)} or stream error policy-violation, "
                                f"got stage={exc.stage} condition={exc.condition}: {exc}")
                    conditions.append(exc.condition or exc.stage)
                else:
                    raise AssertionError(f"attempt {i} with a wrong password got a session")
                await c.logout()
            assert conditions[0] == "not-authorized", conditions
            assert cluster.is_running(2), "node 2 died under repeated wrong passwords"

            # The good password works again (a limiter may hold it back for a while: 30 s).
            async def good():
                c = xc.client(jid, pw, 2)
                try:
                    await c.login(cluster.ip(2))
                except LoginFailed as exc:
                    if exc.stage == "connect":
                        raise AssertionError(f"node 2 stopped listening: {exc}") from None
                    raise
                return c
            c = await async_wait_until(good, 30, f"a good login of {jid} after the failures")
            await c.sync()
    run(body())


def test_stream_management_when_offered(cluster: Cluster) -> None:
    """XEP-0198 is optional: when the server offers urn:xmpp:sm:3 it must ack what we send."""
    jid, pw = cluster.new_user("alice")

    async def body() -> None:
        async with Clients(cluster) as xc:
            c = await xc.login(jid, pw, 1, stream_management=True)
            # slixmpp sends <enable/> during feature negotiation; give the answer 5 s.
            try:
                await async_wait_until(lambda: _sm_answered(c), 5, "<enabled/> or <failed/>")
            except AssertionError:
                pytest.skip("server does not offer XEP-0198 stream management")
            assert "sm_enabled" in c.trace, f"<enable/> was refused: {c.trace}"
            sm = c.plugin["xep_0198"]
            for i in range(5):
                c.chat(jid, f"sm {i}")
            await c.sync()  # the messages and the ping are on the wire before <r/>
            sent = sm.seq
            assert sent >= 6, f"slixmpp counted {sent} stanzas sent since <enable/>"
            sm.request_ack()
            await async_wait_until(
                lambda: _acked(sm, sent), 10,
                f"the server to ack all {sent} stanzas sent since <enable/> (<a h='{sent}'/>); "
                f"last ack h={sm.last_ack}")
    run(body())


async def _acked(sm, n: int) -> bool:
    return sm.last_ack >= n


async def _sm_answered(c) -> bool:
    return "sm_enabled" in c.trace or "sm_failed" in c.trace


def test_direct_tls_negotiates_alpn_xmpp_client(cluster: Cluster) -> None:
    """XEP-0368: direct TLS on 5223 selects ALPN `xmpp-client`; a client offering only another
    protocol is refused by the handshake; one offering none is served."""
    import socket
    import ssl

    from harness import C2S_TLS_PORT

    def handshake(alpn: list[str] | None) -> str | None:
        ctx = ssl.create_default_context(cafile=str(cluster.ca(1)))
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        with socket.create_connection((cluster.ip(1), C2S_TLS_PORT), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=cluster.domain) as tls:
                return tls.selected_alpn_protocol()

    assert handshake(["xmpp-client"]) == "xmpp-client"
    assert handshake(["h2", "xmpp-client"]) == "xmpp-client"
    assert handshake(None) is None
    # Refused during the handshake (rustls fails it with no_application_protocol; the
    # connection is closed before any XMPP is spoken).
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(["h2"])
