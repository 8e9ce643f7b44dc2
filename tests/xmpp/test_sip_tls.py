"""SIP federation over mutual TLS with a real SIP server (Kamailio, `sip_fed.py`) as the other
domain, on a 3-node Herald cluster.

- IM both ways: SIPp (a user of kam.test) -> Kamailio -> Herald's routing node (TLS, Kamailio's
  client certificate checked against `tls-peer`) -> the recipient's home node -> slixmpp; and
  slixmpp -> Herald -> Kamailio (static route over TLS, Herald's client certificate checked by
  Kamailio) -> SIPp.
- Wrong TLS peers: another CA, a name not in `tls-peer`, no certificate, plain text: refused
  before any SIP, counted; everyone else unaffected.
- Decoder errors are answered over TLS too.

Every wait is bounded (SIPp -timeout and subprocess timeouts, client helper timeouts).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Optional

import pytest

from sip_fed import KAM_DOMAIN, SIP_TLS_PORT, SipFed, sip_fed  # noqa: F401 - fixture
from test_sip import closed_after, metric, request
from xmpp_client import Client, bare, run


@pytest.fixture(autouse=True)
def _peers_installed() -> None:
    # A missing peer fails the test rather than skipping it (scripts/test installs them).
    assert shutil.which("sipp"), "SIPp is not installed: apt-get install sip-tester"
    assert shutil.which("kamailio"), ("Kamailio is not installed: apt-get install kamailio "
                                      "kamailio-tls-modules kamailio-presence-modules")


def user_away_from(fed: SipFed, name: str, node: int) -> tuple[str, str]:
    """A new Herald user whose home node is not `node` (users are placed by hash)."""
    for i in range(30):
        jid, pw = fed.cluster.new_user(f"{name}{i}")
        if fed.cluster.home_node(jid) != node:
            return jid, pw
    raise AssertionError(f"no user homed away from node {node} in 30 tries")


def total(fed: SipFed, name: str, **labels: str) -> float:
    return sum(metric(fed.cluster, n, name, **labels) for n in fed.cluster.running())


def configure_wrong_hop(fed: SipFed) -> None:
    """Routes the SIP domain other.test over TLS to the routing node's own TLS port by IP."""
    c = fed.cluster
    c.cli(None, "sip-domain", "add", "other.test", "--type", "generic-sip")
    c.cli(None, "static-route", "add", "wrong-cert", "--domain", "other.test", "--next-hop",
          c.ip(fed.routing), "--port", str(SIP_TLS_PORT), "--transport", "tls")
    c.wait_converged(c.nodes)


def tls_exchange(ip: str, port: int, data: bytes, *, ca: Optional[Path],
                 cert: Optional[tuple[Path, Path]], timeout: float = 5.0) -> str:
    """TLS to ip:port (trusting `ca`, presenting `cert`), sends `data`, returns the first line
    answered; "" when the server closes without a SIP answer; "tls-error: ..." when the TLS
    layer fails (handshake refused, alert after it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca is not None:
        ctx.load_verify_locations(str(ca))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    buf = b""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(data)
                deadline = time.monotonic() + timeout
                while b"\r\n" not in buf and time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        if not buf:
            return f"tls-error: {e}"
    return buf.split(b"\r\n", 1)[0].decode(errors="replace")


def plain_exchange(ip: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Plain TCP: sends `data`, returns everything read until the server closes (bounded)."""
    buf = b""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return buf


def test_im_both_ways_over_mutual_tls_through_kamailio(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    home = fed.cluster.home_node(alice)
    login_node = next(n for n in fed.cluster.nodes if n not in (home, fed.routing))
    user = alice.split("@")[0]

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(fed.cluster.ip(login_node))
            await a.online()

            # Inbound: SIPp -> Kamailio (UDP) -> routing node (TLS) -> home node -> alice.
            await asyncio.to_thread(fed.ua.message, alice, f"bob@{KAM_DOMAIN}",
                                    "hello over mutual TLS", 200)
            got = await a.expect_messages(f"bob@{KAM_DOMAIN}", 1, timeout=15)
            assert got[0]["body"].strip() == "hello over mutual TLS", got[0]

            # Outbound: alice -> Herald -> Kamailio (TLS) -> carol's registered SIPp.
            await asyncio.to_thread(fed.ua.register, "carol", 5090)
            uas = fed.ua.message_server(5090)
            try:
                a.chat(f"carol@{KAM_DOMAIN}", "hi carol over mutual TLS")
                msgs = await asyncio.to_thread(uas.wait)
            finally:
                uas.stop()
            # Session mode: Kamailio rewrote the INVITE's Request-URI to carol's registered
            # contact; the MESSAGE followed inside the dialog.
            assert "INVITE sip:carol@" in msgs and "MESSAGE sip:uas@" in msgs, msgs[-2000:]
            assert f"To: <sip:carol@{KAM_DOMAIN}>" in msgs, msgs[-2000:]
            assert "hi carol over mutual TLS" in msgs, msgs[-2000:]
            assert f"<sip:{user}@{fed.herald_domain}>" in msgs, msgs[-2000:]
            # Herald's hop arrived over TLS (its Via below Kamailio's).
            assert "SIP/2.0/TLS" in msgs, msgs[-2000:]
            errors = await a.drain(a.message_errors, 1.0)
            assert not errors, [str(e) for e in errors]

            # A second message each way reuses the TLS connections.
            await asyncio.to_thread(fed.ua.message, alice, f"bob@{KAM_DOMAIN}", "again", 200)
            await a.expect_messages(f"bob@{KAM_DOMAIN}", 1, timeout=15)

            # A next hop whose certificate does not name it (a Herald node: its certificate
            # names example.test, not its IP): the handshake fails, the sender gets an error.
            await asyncio.to_thread(configure_wrong_hop, fed)
            a.chat("zed@other.test", "to a hop with the wrong certificate")
            err = await a.expect(a.message_errors,
                                 lambda m: bare(m["from"]) == "zed@other.test",
                                 "an error for the hop with the wrong certificate", 20)
            assert err["error"]["condition"] in ("remote-server-not-found",
                                                 "remote-server-timeout"), err
        finally:
            await a.logout()
    run(body(), timeout=110)

    c = fed.cluster
    assert metric(c, fed.routing, "herald_sip_messages_total", direction="inbound") >= 2
    assert metric(c, fed.routing, "herald_sip_connections_opened_total",
                  direction="inbound", transport="tls") >= 1
    # The inbound messages came over one TLS connection from Kamailio (its connection reuse).
    assert metric(c, fed.routing, "herald_sip_connections",
                  direction="inbound", transport="tls") >= 1
    assert total(fed, "herald_sip_connections_opened_total",
                 direction="outbound", transport="tls") >= 1
    assert total(fed, "herald_sip_messages_total", direction="outbound") >= 1
    # alice is homed away from the routing node: her message crossed the node-to-node stream
    # (stamped by her home node), and the peer's answer was timed from that hand-off.
    for leg in ("to_routing_node", "to_sip_answer"):
        assert metric(c, fed.routing, "herald_sip_forward_seconds_count", leg=leg) >= 1, leg
    assert total(fed, "herald_sip_forward_failures_total") == 0
    # Kamailio was never refused (the wrong-certificate hop is a Herald node: its side of that
    # handshake counts the client's alert as inbound tls_alert_received).
    for reason in ("bad_certificate", "no_certificate", "tls_peer", "not_tls"):
        assert total(fed, "herald_sip_tls_failures_total", direction="inbound",
                     reason=reason) == 0, reason
    assert total(fed, "herald_sip_tls_failures_total", direction="outbound",
                 reason="bad_certificate") >= 1
    # Kamailio saw Herald's client certificate (its require_certificate would refuse it else)
    # and relayed to the routing node first.
    log = fed.kam.log_text()
    assert f"{c.ip(fed.routing)}:{SIP_TLS_PORT};transport=tls" in log, log[-2000:]


def test_wrong_tls_peers_are_refused_before_any_sip(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, _ = fed.cluster.new_user("alice")
    ip, port = fed.herald_tls(fed.routing)
    options = request("OPTIONS", alice, f"bob@{KAM_DOMAIN}")
    good = fed.ca.issue([KAM_DOMAIN], stem="good-peer")
    # Slowloris: a TCP connection that never says ClientHello (checked at the end).
    silent = socket.create_connection((ip, port), timeout=5)
    opened = time.monotonic()

    # The right peer is served (OPTIONS from a federated domain, TLS name in the ACL).
    assert tls_exchange(ip, port, options, ca=fed.ca.ca_path, cert=good).startswith(
        "SIP/2.0 200")

    cases = [
        # The right name from another CA: the handshake fails (TLS alert).
        ("bad_certificate", fed.ca.issue_untrusted([KAM_DOMAIN], stem="other-ca")),
        # Our CA, a name not in tls-peer: closed after the handshake, before any SIP.
        ("tls_peer", fed.ca.issue(["evil.test"], stem="evil")),
        # No certificate while tls-peer entries exist.
        ("no_certificate", None),
    ]
    for reason, cert in cases:
        before = metric(fed.cluster, fed.routing, "herald_sip_tls_failures_total",
                        direction="inbound", reason=reason)
        got = tls_exchange(ip, port, options, ca=fed.ca.ca_path, cert=cert)
        assert not got.startswith("SIP/"), f"{reason}: a SIP answer came back: {got!r}"
        after = metric(fed.cluster, fed.routing, "herald_sip_tls_failures_total",
                       direction="inbound", reason=reason)
        assert after == before + 1, f"{reason}: counted {before} -> {after}; got {got!r}"
        assert metric(fed.cluster, fed.routing, "herald_sip_failures_total",
                      direction="inbound", reason=reason) >= 1

    # Plain-text SIP on the TLS port: no SIP answer, the connection closes.
    answer = plain_exchange(ip, port, options)
    assert b"SIP/2.0" not in answer, answer[:200]
    assert metric(fed.cluster, fed.routing, "herald_sip_tls_failures_total",
                  direction="inbound", reason="not_tls") >= 1

    # The silent connection was closed after the 10 s handshake bound, with nothing sent.
    got, waited = closed_after(silent, opened, 30.0)
    assert got == b"", f"silent connection on 5061: got {got!r} after {waited:.1f}s"
    assert waited >= 9.0, f"silent connection on 5061 closed after only {waited:.1f}s"
    assert metric(fed.cluster, fed.routing, "herald_sip_tls_failures_total",
                  direction="inbound", reason="tls_timeout") >= 1

    # A wildcard tls-peer entry is not a pattern: a certificate for a name under it is refused
    # until the exact subject is added, then admitted (the check reads the store live).
    sub = fed.ca.issue([f"edge.{KAM_DOMAIN}"], stem="edge")
    assert not tls_exchange(ip, port, options, ca=fed.ca.ca_path, cert=sub).startswith("SIP/")
    fed.cluster.cli(None, "tls-peer", "add", f"edge.{KAM_DOMAIN}")
    fed.cluster.cli(None, "acl", "add", "edge", "--kind", "domain", "--pattern", KAM_DOMAIN)
    fed.cluster.wait_converged(fed.cluster.nodes)
    assert tls_exchange(ip, port, options, ca=fed.ca.ca_path, cert=sub).startswith(
        "SIP/2.0 200")

    # Everyone else is unaffected: the right peer and Kamailio still get through.
    assert tls_exchange(ip, port, options, ca=fed.ca.ca_path, cert=good).startswith(
        "SIP/2.0 200")
    fed.ua.message(alice, f"bob@{KAM_DOMAIN}", "still here", 200)


def test_decoder_errors_are_answered_over_tls(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, _ = fed.cluster.new_user("alice")
    ip, port = fed.herald_tls(fed.routing)
    frm = f"bob@{KAM_DOMAIN}"
    good = fed.ca.issue([KAM_DOMAIN], stem="good-peer")
    before = metric(fed.cluster, fed.routing, "herald_sip_failures_total",
                    direction="inbound", reason="decode")
    rows = [
        (b"HELLO WORLD\r\n\r\n", "SIP/2.0 400"),
        (request("MESSAGE", alice, frm, "", "Content-Type: text/plain\r\n", length=10_000_000),
         "SIP/2.0 413"),
        (request("MESSAGE", alice, frm, "hi").replace(b"Call-ID", b"X-Call-ID"), "SIP/2.0 400"),
    ]
    for data, want in rows:
        got = tls_exchange(ip, port, data, ca=fed.ca.ca_path, cert=good)
        assert got.startswith(want), f"{data[:60]!r}...: expected {want}, got {got!r}"
    assert metric(fed.cluster, fed.routing, "herald_sip_failures_total",
                  direction="inbound", reason="decode") >= before + 3
    # Still serving, over TLS and through Kamailio.
    assert tls_exchange(ip, port, request("OPTIONS", alice, frm), ca=fed.ca.ca_path,
                        cert=good).startswith("SIP/2.0 200")
    fed.ua.message(alice, frm, "after the bad input", 200)


def test_kamailio_presence_serves_its_own_users(sip_fed) -> None:
    """The peer side the presence tests build on: Kamailio's presence server (no database)
    takes a PUBLISH and NOTIFYs a watcher with the published PIDF."""
    fed: SipFed = sip_fed()
    fed.ua.publish("carol", note="In the lab")
    msgs = fed.ua.subscribe(f"dave@{KAM_DOMAIN}", f"carol@{KAM_DOMAIN}")
    assert "NOTIFY sip:dave@" in msgs, msgs[-3000:]
    assert "<basic>open</basic>" in msgs and "In the lab" in msgs, msgs[-3000:]
