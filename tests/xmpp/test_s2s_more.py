"""More XMPP federation interop: Herald (example.test, 3 nodes, federation on nodes 1 and 2,
clients on node 3) <-> Prosody 0.12 (p.test). Same wiring as `test_s2s.py` (`s2s_fed.py`).

- `test_verification_procedure`: the interdomain federation guide's "Verify XMPP Federation
  Configuration" procedure (004 ch.18; REQUIREMENTS VER-2), steps 1-13, as one script with
  one Herald user (L) and two Prosody users (R1, R2).
- `test_killed_federation_node`: SIGKILL the enabled node that carries the traffic; both
  directions continue through the other enabled node within `FAILOVER_BOUND` seconds.
- `test_disabled_federation_node`: `xmpp-federation set --disable-node N` on the live node
  that carries the traffic moves it to the other node, without restart.
- `test_more_bad_input_on_5269[...]`: raw s2s inputs (a `from` not authenticated on the
  stream, a db:result for a domain Herald does not serve, STARTTLS twice, STARTTLS with
  plaintext pipelined behind it); each gets its answer, then federation still works both ways.
- `test_slow_peer_on_5269`: a TCP connection that never sends a byte is closed within the
  inbound negotiation bound (60 s, `NEGOTIATION` in node/src/s2s/inbound.rs).
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import wait_until  # noqa: E402
from s2s_fed import (DELIVERY_TIMEOUT, FED_NODES, HERALD_DOMAIN,  # noqa: E402,F401
                     PEER_DOMAIN, QUIET_WINDOW, Federation, both_ways, error_bounce,
                     federation, metric_total, not_delivered, scrape)
from s2s_harness import S2S_PORT  # noqa: E402
from raw_xmpp import TLS_NS  # noqa: E402
from xmpp_client import Client, bare, run, subscribe  # noqa: E402

pytestmark = [pytest.mark.s2s]

#: Bound on the verification procedure's body (13 steps, three quiet windows).
PROCEDURE_TIMEOUT = 75.0
#: Bound on traffic shifting to the remaining federation node (kill or disable).
FAILOVER_BOUND = 20.0
#: Inbound negotiation bound of Herald's s2s listener (`NEGOTIATION`, inbound.rs).
NEGOTIATION_BOUND = 60.0
#: The trickling slow peer's whitespace interval.
TRICKLE_EVERY = 10.0


# ---------------------------------------------------------------------------------------------
# Helpers


def shown(p: Any) -> str:
    """A presence's availability as the receiving client renders it: the `<show/>` value, or
    "available" for none (and for `chat`, which RFC 6121 / MAP-3 read as Available), or
    "offline" for type unavailable."""
    if p["type"] == "unavailable":
        return "offline"
    s = p["show"]
    return s if s in ("away", "dnd", "xa") else "available"


async def expect_state(watcher: Client, frm: str, state: str, status: Optional[str],
                       what: str, timeout: float = DELIVERY_TIMEOUT) -> Any:
    """The next presence from `frm` at `watcher` renders as `state` with `status`."""
    return await watcher.expect(
        watcher.presences,
        lambda p: bare(p["from"]) == frm and shown(p) == state
        and (status is None or p["status"] == status),
        f"{what}: presence from {frm} shown as {state!r} with status {status!r}", timeout)


def presences_from(got: list[Any], frm: str) -> list[str]:
    return [f"{p['type'] or 'available'}/{p['show'] or '-'}/{p['status']!r}"
            for p in got if bare(p["from"]) == frm]


def per_node(fed: Federation, name: str, pred: Callable[[dict], bool]) -> dict[int, float]:
    """Metric `name` (samples satisfying `pred`) summed per federation node (running ones)."""
    return {n: sum(v for lab, v in scrape(fed.cluster, n).get(name, []) if pred(lab))
            for n in FED_NODES if fed.cluster.is_running(n)}


def established(direction: str) -> Callable[[dict], bool]:
    return lambda lab: lab.get("direction") == direction and lab.get("state") == "established"


def stanzas(direction: str) -> Callable[[dict], bool]:
    return lambda lab: lab.get("direction") == direction


def herald_user_homed_on(fed: Federation, node: int, name: str, tries: int = 30
                         ) -> tuple[str, str]:
    """A new Herald user whose home node (placement) is `node`, so that killing or disabling
    another node does not move the user's own home as well."""
    for _ in range(tries):
        user = fed.herald_user(name)
        if fed.cluster.home_node(user[0]) == node:
            return user
    raise AssertionError(f"no user homed on node {node} after {tries} tries")


async def first_delivery(sender: Client, receiver: Client, tag: str, bound: float
                         ) -> tuple[float, list[str], list[str]]:
    """`sender` sends a numbered message every second until one reaches `receiver` (bounded
    by `bound` seconds). Returns (seconds to the first delivery, bodies delivered, error
    conditions bounced to the sender)."""
    t0 = time.monotonic()
    sent: list[str] = []
    got: list[str] = []
    while True:
        body = f"{tag} {len(sent)}"
        sender.chat(receiver.user, body)
        sent.append(body)
        for m in await receiver.drain(receiver.messages, 1.0):
            if bare(m["from"]) == sender.user and m["body"]:
                got.append(m["body"])
        if got:
            break
        if time.monotonic() - t0 > bound:
            errors = [str(e["error"]["condition"]) for e in
                      await sender.drain(sender.message_errors, 0.1)]
            raise AssertionError(
                f"{tag}: nothing from {sender.user} reached {receiver.user} within {bound:.0f}s "
                f"({len(sent)} sent; bounced: {errors})")
    took = time.monotonic() - t0
    # What is still on its way, then what was bounced.
    for m in await receiver.drain(receiver.messages, 2.0):
        if bare(m["from"]) == sender.user and m["body"]:
            got.append(m["body"])
    errors = [str(e["error"]["condition"]) for e in
              await sender.drain(sender.message_errors, 0.1)]
    return took, got, errors


async def carrier_with_peer_stream(fed: Federation, alice: Client, bob: Client) -> int:
    """Finds the enabled node that carries alice's outbound traffic to p.test (it has the
    established outbound stream), points example.test's SRV at it first, and makes Prosody
    reopen its stream so that its inbound stream lands on that node too. Returns the node."""
    out = per_node(fed, "herald_s2s_connections", established("outbound"))
    carriers = [n for n, v in out.items() if v > 0]
    assert len(carriers) == 1, f"expected one node with an outbound stream to p.test: {out}"
    carrier = carriers[0]
    other = next(n for n in FED_NODES if n != carrier)
    await asyncio.to_thread(fed.set_srv_priority, {carrier: 0, other: 10})
    fed.prosody.close_s2s(HERALD_DOMAIN)
    await asyncio.to_thread(wait_until, lambda: fed.prosody_sessions() == [], 10,
                            "Prosody's streams with example.test to be gone")
    await both_ways(fed, alice, bob, "srv re-pointed")
    # Any state: a stream authenticated with SASL EXTERNAL stays counted as "negotiating"
    # (inbound.rs calls `gauge.established()` on the dialback path only).
    inbound = per_node(fed, "herald_s2s_connections",
                       lambda lab: lab.get("direction") == "inbound")
    assert inbound.get(carrier, 0) > 0 and inbound.get(other, 0) == 0, (
        f"Prosody's stream should be on node {carrier} (SRV priority 0): {inbound}")
    return carrier


# ---------------------------------------------------------------------------------------------
# 1. The guide's verification procedure


STATES = [("away", "away"), ("dnd", "dnd"), ("xa", "xa"), ("chat", "available"),
          (None, "available")]


def test_verification_procedure(federation) -> None:
    """004 ch.18 "Verify XMPP Federation Configuration" (VER-2) with TLS required and SASL
    EXTERNAL both ways. L = the Herald user (client on node 3), R1/R2 = Prosody users (the
    guide's two WebEx Connect clients)."""
    fed = federation("required", prosody_kw=dict(modules=["blocklist"]))

    async def body() -> None:
        try:
            # Step 1: log on to the XMPP client connected to the local deployment (Herald).
            L = await fed.herald_client(fed.herald_user("l"))
            # Step 2: log on to two federated clients (Prosody).
            R1 = await fed.prosody_client(fed.prosody_user("r1"))
            R2 = await fed.prosody_client(fed.prosody_user("r2"))

            # Step 3: R1 adds L as a contact; L is asked to accept and accepts; L and R1 see
            # each other's availability (VER-2: both sides accept, so L adds R1 back).
            await subscribe(R1, L)  # R1 sees L available after L's approval
            await subscribe(L, R1)  # L sees R1 available after R1's approval
            assert (await L.roster_items())[R1.user]["subscription"] == "both", \
                "step 3: L's roster item for R1 should be subscription=both"

            # Step 4: L adds R2; R2 accepts; L sees R2's availability (R2 also adds L, so
            # that step 11 can check R2 still sees L).
            await subscribe(L, R2)
            await subscribe(R2, L)

            # Step 5: toggle availability on both sides; every change is seen on the other
            # side with the mapped state (Table 7, generic XMPP: away, dnd, xa map to
            # themselves; chat and available are Available).
            for show, state in STATES:
                st = f"step 5 L {show or 'available'}"
                L.send_presence(pshow=show, pstatus=st)
                for w in (R1, R2):
                    await expect_state(w, L.user, state, st, f"step 5: {w.user} sees L {state}")
            for show, state in STATES:
                st = f"step 5 R1 {show or 'available'}"
                R1.send_presence(pshow=show, pstatus=st)
                await expect_state(L, R1.user, state, st, f"step 5: L sees R1 {state}")

            # Step 6: L sends an IM to R1. Step 7: it appears at R1.
            L.chat(R1.user, "step 6: hello R1")
            got = await R1.expect_messages(L.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "step 6: hello R1", f"step 7: {got[0]}"

            # Step 8: both close the IM window (nothing on the wire for XMPP); nothing
            # bounced on either side so far.
            assert L.message_errors.empty() and R1.message_errors.empty(), \
                "step 8: a message bounced during steps 6-7"

            # Step 9: R1 sends an IM to L. Step 10: it appears at L.
            R1.chat(L.user, "step 9: hello L")
            got = await L.expect_messages(R1.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "step 9: hello L", f"step 10: {got[0]}"

            # Step 11: L blocks R1 server-side (XEP-0191).
            await L.block(R1.user)
            assert await L.blocked() == {R1.user}, "step 11: L's block list should hold R1"
            # 11b: R1 now sees L offline ...
            await R1.expect_presence(L.user, "step 11: R1 sees L offline after the block",
                                     ptype="unavailable", timeout=DELIVERY_TIMEOUT)
            # ... while R2 still sees L's availability (and R1 does not).
            L.send_presence(pshow="away", pstatus="step 11 L away")
            await expect_state(R2, L.user, "away", "step 11 L away",
                               "step 11: R2 still sees L's availability")
            leaked = presences_from(await R1.drain(R1.presences, QUIET_WINDOW), L.user)
            assert leaked == [], f"step 11: blocked R1 still saw L's presence: {leaked}"
            # 11c: R1 still appears online to L (no unavailable from R1 was made up for L) ...
            offline = [p for p in presences_from(await L.drain(L.presences, 0.2), R1.user)
                       if p.startswith("unavailable")]
            assert offline == [], f"step 11: R1 should still appear online to L: {offline}"
            # ... but L cannot send an IM to R1 (XEP-0191 §3.6: not-acceptable).
            L.chat(R1.user, "step 11: to blocked R1")
            cond = await error_bounce(L, R1.user)
            assert cond == "not-acceptable", f"step 11: IM to blocked R1 bounced with {cond}"
            await not_delivered(R1, L.user)
            # And R1's IMs do not reach L (XEP-0191 §3.5).
            R1.chat(L.user, "step 11: from blocked R1")
            await not_delivered(L, R1.user)

            # Step 12: the federated user blocks L (XEP-0191 on Prosody). R2 does it: L blocked
            # R1 in step 11, so L's server already drops everything from R1 and step 13 could
            # not be observed with R1.
            await R2.block(L.user)
            # Step 13: R2's availability is no longer available at L: L sees R2 offline, and
            # R2's later changes do not reach L.
            await L.expect_presence(R2.user, "step 13: L sees R2 offline after R2 blocked L",
                                    ptype="unavailable", timeout=DELIVERY_TIMEOUT)
            R2.send_presence(pshow="dnd", pstatus="step 13 R2 dnd")
            leaked = presences_from(await L.drain(L.presences, QUIET_WINDOW), R2.user)
            assert leaked == [], f"step 13: L still saw R2's presence: {leaked}"
        finally:
            await fed.close_clients()
    run(body(), PROCEDURE_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# 2. Two federation-enabled nodes: one killed, one disabled


def test_killed_federation_node(federation) -> None:
    """XMPP-3 / CLU-6: SIGKILL the enabled node that carries both Herald's outbound stream to
    p.test and Prosody's inbound stream (it is first in example.test's SRV). alice (client
    and home on node 3) reaches bob through the other enabled node, and bob reaches alice
    (Prosody tries the next SRV target), each within FAILOVER_BOUND seconds."""
    fed = federation("required")
    timings: dict[str, float] = {}

    async def body() -> None:
        try:
            alice = await fed.herald_client(herald_user_homed_on(fed, 3, "alice"))
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            await subscribe(alice, bob)
            await subscribe(bob, alice)
            carrier = await carrier_with_peer_stream(fed, alice, bob)
            other = next(n for n in FED_NODES if n != carrier)
            before = per_node(fed, "herald_s2s_stanzas_total", stanzas("outbound"))[other]

            fed.cluster.kill9(carrier)
            took, got, errors = await first_delivery(alice, bob, "outbound after kill",
                                                     FAILOVER_BOUND)
            timings["outbound"] = took
            print(f"\nkilled node {carrier}: outbound resumed after {took:.1f}s; delivered "
                  f"{got}; bounced {errors}")
            after = per_node(fed, "herald_s2s_stanzas_total", stanzas("outbound"))[other]
            assert after > before, f"node {other} sent nothing after node {carrier} died"

            took, got, errors = await first_delivery(bob, alice, "inbound after kill",
                                                     FAILOVER_BOUND)
            timings["inbound"] = took
            print(f"inbound resumed after {took:.1f}s; delivered {got}; bounced {errors}")
            # Presence and messages both ways, now all through the survivor.
            await both_ways(fed, alice, bob, "after kill")
        finally:
            await fed.close_clients()
    run(body(), 75)
    assert fed.cluster.is_running(3)


def test_disabled_federation_node(federation) -> None:
    """`xmpp-federation set --disable-node N` on the live node N that carries both streams
    with p.test (N is first in example.test's SRV): traffic moves to the other enabled node
    without restart. Checked: (a) both directions still deliver within FAILOVER_BOUND; (b) N
    passes no federated stanza any more (stanza counters), both directions; (c) N keeps no
    federated stream open; (d) once Prosody reopens its streams (closed from its side), it
    still reaches alice: N's refusal lets Prosody fall through to the next SRV target."""
    fed = federation("required")
    problems: list[str] = []

    def counters() -> dict[str, dict[int, float]]:
        return {d: per_node(fed, "herald_s2s_stanzas_total", stanzas(d))
                for d in ("inbound", "outbound")}

    async def body() -> None:
        try:
            alice = await fed.herald_client(herald_user_homed_on(fed, 3, "alice"))
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            await subscribe(alice, bob)
            await subscribe(bob, alice)
            carrier = await carrier_with_peer_stream(fed, alice, bob)
            other = next(n for n in FED_NODES if n != carrier)

            fed.disable_node(carrier)
            # (a)
            took, got, errors = await first_delivery(alice, bob, "outbound after disable",
                                                     FAILOVER_BOUND)
            print(f"\ndisabled node {carrier}: outbound delivered after {took:.1f}s: {got}; "
                  f"bounced {errors}")
            took, got, errors = await first_delivery(bob, alice, "inbound after disable",
                                                     FAILOVER_BOUND)
            print(f"inbound delivered after {took:.1f}s: {got}; bounced {errors}")
            # (b)
            before = counters()
            await both_ways(fed, alice, bob, "after disable")
            after = counters()
            print(f"stanzas per node before/after: {before} -> {after}")
            for d in ("inbound", "outbound"):
                if after[d][carrier] != before[d][carrier]:
                    problems.append(f"disabled node {carrier} still passed {d} stanzas "
                                    f"({before[d][carrier]:.0f} -> {after[d][carrier]:.0f})")
                if after[d][other] <= before[d][other]:
                    problems.append(f"node {other} passed no {d} stanzas "
                                    f"({before[d][other]:.0f} -> {after[d][other]:.0f})")
            # (c)
            conns = {(lab.get("direction"), lab.get("state")): v for lab, v in
                     scrape(fed.cluster, carrier).get("herald_s2s_connections", []) if v}
            if conns:
                problems.append(f"disabled node {carrier} still has federated streams "
                                f"{conns}; Prosody's view: "
                                f"{[(r.get('dir'), r.get('session id')) for r in fed.prosody_sessions()]}")
            # (d)
            fed.prosody.close_s2s(HERALD_DOMAIN)
            await asyncio.to_thread(wait_until, lambda: fed.prosody_sessions() == [], 10,
                                    "Prosody's streams with example.test to be gone")
            bob.chat(alice.user, "after Prosody reconnects")
            try:
                got = await alice.expect_messages(bob.user, 1, timeout=FAILOVER_BOUND)
                assert got[0]["body"] == "after Prosody reconnects", got[0]
            except AssertionError as exc:
                bounced = [str(e["error"]["condition"]) for e in
                           await bob.drain(bob.message_errors, 0.5)]
                problems.append(f"after Prosody reopened its streams (SRV: node {carrier} "
                                f"first, node {other} second), bob's message did not reach "
                                f"alice; bob got errors {bounced}: {exc}")
            assert fed.cluster.is_running(carrier), f"node {carrier} should still run"
        finally:
            await fed.close_clients()
    run(body(), 75)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# 3. More bad input on 5269


def _from_not_authenticated(fed: Federation) -> str:
    # A stream authenticated with SASL EXTERNAL as r.test; a stanza from q.test on it.
    with fed.raw(frm="r.test", cert=fed.env.ca.issue(["r.test"], stem="r.test")) as s:
        s.sasl_external(s.starttls())
        s.send(f"<message from='mallory@q.test' to='x@{HERALD_DOMAIN}' type='chat'>"
               "<body>not yours</body></message>")
        return s.expect_stream_error({"invalid-from"}, "a stanza from q.test on a stream "
                                     "authenticated for r.test only")


def _dialback_unserved_domain(fed: Federation) -> str:
    # XEP-0220 §2.4 (errors): a db:result whose `to` the receiving server does not serve
    # gets <db:result type='error'> with <item-not-found/>.
    with fed.raw() as s:
        s.open_stream()
        s.send(f"<db:result from='{PEER_DOMAIN}' to='not-served.test'>"
               "0123456789abcdef0123456789abcdef</db:result>")
        typ, text = s.expect_dialback("result", "the answer to a db:result for not-served.test")
        assert typ == "error", f"expected a dialback error answer, got: {text}"
        assert re.search(r"<item-not-found\b", text), f"expected <item-not-found/>: {text}"
        return "item-not-found"


def _starttls_twice(fed: Federation) -> str:
    # STARTTLS, TLS up, then STARTTLS again inside TLS: refused with a stream error.
    with fed.raw() as s:
        features = s.starttls()
        assert TLS_NS not in features, f"STARTTLS offered again inside TLS: {features}"
        s.send(f"<starttls xmlns='{TLS_NS}'/>")
        return s.expect_stream_error(
            {"policy-violation", "unsupported-stanza-type", "not-authorized"},
            "a second STARTTLS inside TLS")


def _starttls_with_pipelined_plaintext(fed: Federation) -> str:
    # <starttls/> and, in the same plaintext write, a second <starttls/> and a stanza: the
    # bytes after <starttls/> were sent before TLS and must be discarded, not read as if
    # they had come over TLS (the STARTTLS command-injection class, CVE-2011-0411).
    with fed.raw() as s:
        s.open_stream()
        s.send(f"<starttls xmlns='{TLS_NS}'/><starttls xmlns='{TLS_NS}'/>"
               f"<message from='mallory@{PEER_DOMAIN}' to='x@{HERALD_DOMAIN}'>"
               "<body>injected</body></message>")
        s.read_until(r"<proceed\b[^>]*/>|<proceed\b[^>]*>\s*</proceed>", "<proceed/>")
        ctx = ssl.create_default_context(cafile=str(s.ca))
        s.sock.settimeout(s.timeout)
        try:
            s.sock = ctx.wrap_socket(s.sock, server_hostname=HERALD_DOMAIN)
        except (ssl.SSLError, OSError) as exc:
            return f"closed in the TLS handshake ({exc})"
        s.buf = ""
        features = s.open_stream()  # a normal encrypted stream: nothing injected was read
        assert "<stream:error" not in s.buf, s.buf
        assert "EXTERNAL" in features or "dialback" in features, features
        return "injected plaintext discarded"


BAD_INPUT = {
    "from-not-authenticated": _from_not_authenticated,
    "dialback-for-unserved-domain": _dialback_unserved_domain,
    "starttls-twice": _starttls_twice,
    "starttls-with-pipelined-plaintext": _starttls_with_pipelined_plaintext,
}


async def _still_federates(fed: Federation, tag: str) -> None:
    alice = await fed.herald_client(fed.herald_user("alice"))
    bob = await fed.prosody_client(fed.prosody_user("bob"))
    alice.chat(bob.user, f"still works after {tag}")
    got = await bob.expect_messages(alice.user, 1, timeout=DELIVERY_TIMEOUT)
    assert got[0]["body"] == f"still works after {tag}"
    bob.chat(alice.user, f"both ways after {tag}")
    got = await alice.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
    assert got[0]["body"] == f"both ways after {tag}"


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_more_bad_input_on_5269(federation, case: str) -> None:
    fed = federation("optional")
    answer = BAD_INPUT[case](fed)
    print(f"\n{case}: {answer}")

    async def body() -> None:
        try:
            await _still_federates(fed, case)
        finally:
            await fed.close_clients()
    run(body(), 50)
    for n in fed.cluster.nodes:
        assert fed.cluster.is_running(n), f"node {n} died after {case}"


def test_slow_peer_on_5269(federation) -> None:
    """Two slow peers on 5269, opened before anything else: one opens TCP and sends nothing;
    the other sends a stream header (and gets features), then only a whitespace keepalive
    every TRICKLE_EVERY seconds and never authenticates. Herald closes both within its
    negotiation bound (60 s, `NEGOTIATION` in inbound.rs, not configurable), with a
    `connection-timeout` stream error if it writes anything; meanwhile federation works both
    ways."""
    fed = federation("optional")
    ip = fed.cluster.ip(FED_NODES[0])
    silent = socket.create_connection((ip, S2S_PORT), timeout=5)
    t0 = time.monotonic()
    trickle = fed.raw(FED_NODES[0])
    try:
        trickle.open_stream()

        async def body() -> None:
            try:
                await _still_federates(fed, "two slow connections")
            finally:
                await fed.close_clients()
        run(body(), 50)

        socks = {"silent": silent, "trickle": trickle.sock}
        got = {k: b"" for k in socks}
        closed_at: dict[str, float] = {}
        next_space = t0 + TRICKLE_EVERY
        deadline = t0 + NEGOTIATION_BOUND + 5
        while len(closed_at) < len(socks) and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_space and "trickle" not in closed_at:
                try:
                    trickle.sock.sendall(b" ")
                except OSError:
                    closed_at["trickle"] = now - t0
                next_space += TRICKLE_EVERY
            open_ = [s_ for k, s_ in socks.items() if k not in closed_at]
            ready, _, _ = select.select(open_, [], [], max(0.0, min(1.0, next_space - now,
                                                                     deadline - now)))
            for k, s_ in socks.items():
                if s_ in ready and k not in closed_at:
                    try:
                        data = s_.recv(4096)
                    except (ConnectionResetError, ssl.SSLError):
                        data = b""
                    if data:
                        got[k] += data
                    else:
                        closed_at[k] = time.monotonic() - t0
        took = time.monotonic() - t0
        print(f"\nafter {took:.1f}s: closed {closed_at}; silent got {got['silent']!r}; "
              f"trickle got {got['trickle']!r}")
        problems = [f"the {k} connection was still open after {took:.0f}s (bound "
                    f"{NEGOTIATION_BOUND:.0f}s); it got {got[k]!r}"
                    for k in socks if k not in closed_at]
        problems += [f"the {k} connection got no connection-timeout: {got[k]!r}"
                     for k in closed_at if got[k] and b"connection-timeout" not in got[k]]
        assert not problems, "\n".join(problems)
    finally:
        silent.close()
        trickle.close()
    for n in fed.cluster.nodes:
        assert fed.cluster.is_running(n)


# ---------------------------------------------------------------------------------------------
# 4. ejabberd as a second interop peer


EJABBERD_DOMAIN = "e.test"


def test_ejabberd_interop(s2s_env, federation) -> None:
    """Herald (example.test) <-> ejabberd 23.01 (e.test) with TLS required, certificates
    checked both ways: subscribe and approve both ways, presence and a message each way.
    Herald's side authenticated both streams with SASL EXTERNAL (its auth counters), and
    ejabberd reports one incoming and one outgoing s2s connection."""
    fed = federation("required")  # Prosody p.test runs too, unused here
    ej = s2s_env.ejabberd(EJABBERD_DOMAIN)
    s2s_env.dns.restart()
    ej.start()
    carol_user = (ej.register("carol", "pw-carol-ej"), "pw-carol-ej")
    auth_before = {d: metric_total(fed.cluster, "herald_s2s_auth_total",
                                   pred=lambda lab, d=d: lab.get("direction") == d
                                   and lab.get("method") == "sasl_external"
                                   and lab.get("result") == "ok")
                   for d in ("inbound", "outbound")}

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            carol = Client(*carol_user, ca=fed.ca)
            fed.clients.append(carol)
            await carol.login(ej.ip)
            await carol.online()
            # The very first stanza to e.test is a subscription request from Herald.
            await subscribe(alice, carol)
            await subscribe(carol, alice)
            await both_ways(fed, alice, carol, "ejabberd")
        finally:
            await fed.close_clients()
    run(body(), 50)

    auth_after = {d: metric_total(fed.cluster, "herald_s2s_auth_total",
                                  pred=lambda lab, d=d: lab.get("direction") == d
                                  and lab.get("method") == "sasl_external"
                                  and lab.get("result") == "ok")
                  for d in ("inbound", "outbound")}
    for d in ("inbound", "outbound"):
        assert auth_after[d] > auth_before[d], (
            f"no {d} SASL EXTERNAL authentication with ejabberd counted: {auth_before} -> "
            f"{auth_after}")
    n_in = int(ej.ctl("incoming_s2s_number").strip())
    n_out = int(ej.ctl("outgoing_s2s_number").strip())
    assert n_in >= 1 and n_out >= 1, f"ejabberd s2s connections: in {n_in}, out {n_out}"
