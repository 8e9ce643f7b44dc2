"""Client limits against a real node: open connections per source prefix, and the per-session
stanza rate (slowed down, then cut with policy-violation), each with its metric, while a
well-behaved client on the same node is unaffected."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from harness import C2S_PORT, Cluster, wait_until
from raw_xmpp import RawError, RawStream
from xmpp_client import Clients, run

NODE = 1


@pytest.fixture
def limited(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A one-node cluster started with the limits in the test's `limits` marker (environment
    variables, as an operator would set them)."""
    marker = request.node.get_closest_marker("limits")
    for key, value in (marker.kwargs.items() if marker else ()):
        monkeypatch.setenv(key, str(value))
    c = Cluster(tmp_path / "cluster")
    try:
        c.start_cluster(1)
        yield c
    finally:
        c.stop()


def limit_hits(cluster: Cluster, limit: str) -> float:
    code, body = cluster.http_get(NODE, "/metrics")
    assert code == 200
    m = re.search(r'^herald_c2s_limit_hits_total\{[^}]*limit="' + limit + r'"[^}]*\} (\S+)$',
                  body, re.M)
    return float(m.group(1)) if m else 0.0


def answered(stream: RawStream, what: str, timeout: float = 5.0) -> bool:
    """True when the server answers a stream header; False when it closes the connection."""
    try:
        stream.open_stream()
        return True
    except RawError:
        if stream.eof:
            return False
        raise RawError(f"{what}: neither answered nor closed within {timeout}s") from None


def chat_still_works(cluster: Cluster) -> None:
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")

    async def go() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, NODE)
            b = await xc.login(bob, bpw, NODE)
            await a.online()
            await b.online()
            a.chat(bob, "unaffected")
            got = await b.expect_messages(alice, 1)
            assert got[0]["body"] == "unaffected", got[0]
    run(go())


@pytest.mark.limits(HERALD_MAX_CONNECTIONS_PER_SOURCE=3)
def test_connections_per_source_are_capped(limited: Cluster) -> None:
    ip = limited.ip(NODE)
    src = "127.0.9.1"
    held = [RawStream(ip, C2S_PORT, source=src) for _ in range(3)]
    try:
        for i, s in enumerate(held):
            assert answered(s, f"connection {i + 1} of 3"), f"connection {i + 1} was refused"
        with RawStream(ip, C2S_PORT, source=src) as fourth:
            assert not answered(fourth, "a 4th connection from one source"), \
                "a 4th connection from the same source was served"
        assert limit_hits(limited, "connections_per_source") >= 1
        # Another source is not affected, nor are ordinary clients.
        with RawStream(ip, C2S_PORT, source="127.0.9.2") as other:
            assert answered(other, "a connection from another source")
        chat_still_works(limited)
        # A slot freed is a slot reusable (bounded wait for the server to see the close).
        held.pop().close()

        def reopened() -> bool:
            with RawStream(ip, C2S_PORT, source=src) as again:
                return answered(again, "a connection after one closed")
        wait_until(reopened, 10.0, "a new connection once one of the three closed")
    finally:
        for s in held:
            s.close()


@pytest.mark.limits(HERALD_MAX_STANZAS_PER_SECOND=5)
def test_a_client_over_its_stanza_rate_is_slowed_then_cut(limited: Cluster) -> None:
    jid, pw = limited.new_user("flood")
    with RawStream(limited.ip(NODE), C2S_PORT, ca=limited.ca(NODE)) as s:
        s.login(jid, pw)
        # 40 pings at once: a burst of 10 passes, the other 30 at 5/s take about 6 s.
        started = time.monotonic()
        s.send("".join(f"<iq type='get' id='p{i}' to='{limited.domain}'>"
                       "<ping xmlns='urn:xmpp:ping'/></iq>" for i in range(40)))
        seen: list[str] = []
        for _ in range(40):
            m = s.read_until(r"<iq\b[^>]*\bid=['\"](p\d+)['\"]", "the answer to a ping", timeout=30)
            seen.append(m.group(1))
        took = time.monotonic() - started
        assert seen == [f"p{i}" for i in range(40)], f"answers out of order: {seen}"
        assert took >= 4.0, f"40 pings at a limit of 5/s were all answered in {took:.1f}s"
        assert limit_hits(limited, "stanza_rate") >= 1
        # Staying over the rate (20/s for up to 25 s) ends the session with policy-violation.
        deadline = time.monotonic() + 25
        i = 0
        while not s.eof and time.monotonic() < deadline:
            try:
                s.send("".join(f"<presence><status>{i}-{k}</status></presence>"
                               for k in range(4)))
            except OSError:
                break
            i += 1
            s._recv(time.monotonic() + 0.2)
            if "<stream:error>" in s.buf:
                break
        s.expect_stream_error({"policy-violation"}, "a client that stayed over its stanza rate",
                              timeout=20)
    chat_still_works(limited)


def test_stored_bytes_per_user_are_bounded(limited: Cluster) -> None:
    """Offline messages of 150 KB to a user who is away: about 1 MiB (the default
    xmpp.max_user_bytes) is stored; the next is bounced with resource-constraint; she gets
    exactly the stored ones, in order."""
    alice, apw = limited.new_user("alice")
    carol, cpw = limited.new_user("carol")
    big = "x" * (150 * 1024)

    async def body() -> None:
        async with Clients(limited) as xc:
            a = await xc.login(alice, apw, NODE)
            await a.online()
            sent = 0
            errors: list = []
            while not errors and sent < 12:
                a.chat(carol, f"{sent}:{big}")
                sent += 1
                await a.sync()
                errors = await a.drain(a.message_errors, 0.5)
            assert errors, f"{sent} offline messages of 150 KB were all stored"
            conds = [e["error"]["condition"] for e in errors]
            assert conds == ["resource-constraint"], conds
            stored = sent - 1
            assert 5 <= stored <= 7, f"{stored} messages of 150 KB stored under a 1 MiB bound"
            assert limit_hits(limited, "user_bytes") >= 1
            c = await xc.login(carol, cpw, NODE)
            await c.online()
            got = await c.expect_messages(alice, stored, timeout=20)
            assert [m["body"].split(":", 1)[0] for m in got] == [str(i) for i in range(stored)]
            extra = await c.drain(c.messages, 1.0)
            assert extra == [], "a refused message was delivered after all"
    run(body())
