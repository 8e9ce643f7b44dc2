"""SIP reaches the routing node through any node: a node that is not the routing node relays each
SIP connection (TCP or TLS, unopened) to the routing node's listener behind a PROXY protocol v2
header carrying the peer's real address (`node/src/sip/relay.rs`). A Kubernetes Service over
every pod therefore works, and the SIP entry point follows `routing-node set`.

- TCP (SIPp): a MESSAGE sent to a non-routing node reaches the XMPP user; the routing node's IP
  ACL saw SIPp's own address (an entry admitting only SIPp still admits it) and a relayed peer
  outside the ACL still gets 403 from the routing node.
- After `routing-node set` moves the role, the old routing node relays to the new one.
- A PROXY header is trusted from a cluster member's address only: sent by anyone else, on any
  node, the connection is closed without a SIP answer and counted.
- With `--sip-relay=false` a non-routing node answers 503 as before.
- TLS: the relay does not open TLS; the routing node handshakes and checks the client
  certificate against `tls-peer`, so a wrong certificate is refused there and a good peer is
  served through a non-routing node.

Every wait is bounded (SIPp -timeout, subprocess and socket timeouts, client helper timeouts).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from harness import Cluster, wait_until
from sip_fed import HERALD_DOMAIN, KAM_DOMAIN, SIP_TLS_PORT
from s2s_harness import TestCA
from test_sip import SIP_DOMAIN, SIP_PORT, configure, metric, request, sipp_ip, uac
from test_sip_tls import tls_exchange
from xmpp_client import Clients, run

PROXY_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture(autouse=True)
def _sipp_installed() -> None:
    assert shutil.which("sipp"), "SIPp is not installed: apt-get install sip-tester"


def outsider(cluster: Cluster, last: int) -> str:
    """An address of the cluster's subnet that is no node's (nodes are .1, .2, .3)."""
    return f"127.{cluster.subnet[0]}.{cluster.subnet[1]}.{last}"


def proxy_v2(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """A PROXY protocol v2 header (PROXY command, TCP over IPv4), as the spec writes it."""
    return (PROXY_SIGNATURE + bytes([0x21, 0x11]) + (12).to_bytes(2, "big")
            + socket.inet_aton(src[0]) + socket.inet_aton(dst[0])
            + src[1].to_bytes(2, "big") + dst[1].to_bytes(2, "big"))


def exchange_from(src_ip: str, ip: str, port: int, data: bytes, timeout: float = 5.0) -> str:
    """From `src_ip`, sends raw bytes to ip:port; returns the first line answered ("" when the
    server closes without answering)."""
    buf = b""
    with socket.create_connection((ip, port), timeout=timeout,
                                  source_address=(src_ip, 0)) as s:
        s.sendall(data)
        try:
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except ConnectionResetError:
            pass
    return buf.split(b"\r\n", 1)[0].decode(errors="replace")


def relayed(cluster: Cluster, node: int, transport: str) -> float:
    return metric(cluster, node, "herald_sip_relayed_connections_total", transport=transport)


def test_tcp_relay_keeps_the_peer_address_and_follows_the_routing_node(
        cluster: Cluster, tmp_path: Path) -> None:
    alice, apw = cluster.new_user("alice")
    home = cluster.home_node(alice)
    routing = next(n for n in cluster.nodes if n != home)
    other = next(n for n in cluster.nodes if n not in (home, routing))
    # The ACL admits SIPp's address only (kind ip).
    configure(cluster, routing)
    frm = f"bob@{SIP_DOMAIN}"

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, home)
            await a.online()

            # SIPp -> non-routing node -> (relay) routing node -> alice's home -> alice.
            await asyncio.to_thread(uac, cluster, tmp_path, other, to=alice, frm=frm,
                                    body="relayed hello", code=200)
            got = await a.expect_messages(frm, 1, timeout=15)
            assert got[0]["body"].strip() == "relayed hello", got[0]

            # A relayed peer outside the ACL: refused by the routing node, as its own address.
            line = exchange_from(outsider(cluster, 201), cluster.ip(other), SIP_PORT,
                                 request("MESSAGE", alice, frm, "not from SIPp",
                                         "Content-Type: text/plain\r\n"))
            assert line.startswith("SIP/2.0 403"), line

            # The role moves: the old routing node now relays to the new one.
            cluster.cli(None, "routing-node", "set", str(other))
            cluster.wait_converged(cluster.nodes)
            before = relayed(cluster, routing, "tcp")
            await asyncio.to_thread(uac, cluster, tmp_path, routing, to=alice, frm=frm,
                                    body="after the move", code=200)
            got = await a.expect_messages(frm, 1, timeout=15)
            assert got[0]["body"].strip() == "after the move", got[0]
            assert relayed(cluster, routing, "tcp") == before + 1

            late = await a.drain(a.messages, 1.0)
            assert not late, [m["body"] for m in late]
    run(body(), timeout=90)

    assert relayed(cluster, other, "tcp") >= 2
    # The routing node judged the relayed peers (ACL), the relaying node answered nothing.
    assert metric(cluster, routing, "herald_sip_failures_total", reason="acl") >= 1
    assert metric(cluster, other, "herald_sip_failures_total", reason="not_routing_node") == 0
    assert metric(cluster, other, "herald_sip_relays", transport="tcp") == 0
    routing_log = cluster.log_path(routing).read_text(errors="replace")
    assert "relayed by a cluster member" in routing_log


def test_proxy_headers_are_trusted_from_members_only(cluster: Cluster) -> None:
    alice, _ = cluster.new_user("alice")
    routing, member = cluster.nodes[0], cluster.nodes[1]
    configure(cluster, routing)
    ip = cluster.ip(routing)
    options = request("OPTIONS", alice, f"bob@{SIP_DOMAIN}")
    # The header claims SIPp's address, the only one the ACL admits.
    claim = proxy_v2((sipp_ip(cluster), 40000), (ip, SIP_PORT))

    # From a member's address the header is believed: the ACL admits the claimed peer.
    assert exchange_from(cluster.ip(member), ip, SIP_PORT, claim + options).startswith(
        "SIP/2.0 200")
    # A member without a header is an ordinary peer (its own address, outside the ACL).
    assert exchange_from(cluster.ip(member), ip, SIP_PORT, options).startswith("SIP/2.0 403")

    # From outside, on the routing node or any other: closed without a SIP answer.
    for node in cluster.nodes:
        before = metric(cluster, node, "herald_sip_failures_total", reason="proxy_not_member")
        line = exchange_from(outsider(cluster, 202), cluster.ip(node), SIP_PORT,
                             claim + options)
        assert line == "", f"node {node} answered a PROXY header from outside: {line!r}"
        after = metric(cluster, node, "herald_sip_failures_total", reason="proxy_not_member")
        assert after == before + 1, (node, before, after)
    # A malformed header (oversized) from a member: closed and counted too.
    bad = PROXY_SIGNATURE + bytes([0x21, 0x11]) + (1000).to_bytes(2, "big")
    assert exchange_from(cluster.ip(member), ip, SIP_PORT, bad + options) == ""
    assert metric(cluster, routing, "herald_sip_failures_total", reason="proxy_header") >= 1
    # Ordinary peers are unaffected.
    assert exchange_from(sipp_ip(cluster), ip, SIP_PORT, options).startswith("SIP/2.0 200")


def test_relay_off_answers_503(cluster: Cluster) -> None:
    alice, _ = cluster.new_user("alice")
    routing, off = cluster.nodes[0], cluster.nodes[2]
    configure(cluster, routing)
    cluster.terminate(off)
    cluster.cmdlines[off] = cluster.cmdlines[off] + ["--sip-relay=false"]
    cluster.restart(off)
    cluster.wait_converged(cluster.nodes)
    options = request("OPTIONS", alice, f"bob@{SIP_DOMAIN}")
    wait_until(lambda: exchange_from(sipp_ip(cluster), cluster.ip(off), SIP_PORT, options)
               .startswith("SIP/2.0 503"), 15, "a 503 from the node with --sip-relay=false")
    assert relayed(cluster, off, "tcp") == 0
    # The others still relay.
    assert exchange_from(sipp_ip(cluster), cluster.ip(cluster.nodes[1]), SIP_PORT,
                         options).startswith("SIP/2.0 200")


def test_tls_is_relayed_unopened_and_checked_by_the_routing_node(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue([HERALD_DOMAIN, f"*.{HERALD_DOMAIN}"], stem="herald")
    cluster = Cluster(tmp_path / "cluster", HERALD_DOMAIN, extra_args=[
        "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.ca_path)])
    try:
        cluster.start_cluster(3)
        routing, other = 1, 2
        cluster.cli(None, "sip-domain", "add", KAM_DOMAIN, "--type", "generic-sip")
        cluster.cli(None, "tls-peer", "add", KAM_DOMAIN)
        cluster.cli(None, "acl", "add", "kam", "--kind", "fqdn", "--pattern", KAM_DOMAIN)
        cluster.cli(None, "routing-node", "set", str(routing))
        cluster.wait_converged(cluster.nodes)
        alice, _ = cluster.new_user("alice")
        options = request("OPTIONS", alice, f"bob@{KAM_DOMAIN}")
        good = ca.issue([KAM_DOMAIN], stem="good-peer")
        ip = cluster.ip(other)

        # The good peer, through the non-routing node: served (TLS ended on the routing node,
        # whose certificate the client verified against the CA).
        assert tls_exchange(ip, SIP_TLS_PORT, options, ca=ca.ca_path, cert=good).startswith(
            "SIP/2.0 200")
        for reason, bad in [("tls_peer", ca.issue(["evil.test"], stem="evil")),
                            ("bad_certificate", ca.issue_untrusted([KAM_DOMAIN], stem="other")),
                            ("no_certificate", None)]:
            before = metric(cluster, routing, "herald_sip_tls_failures_total",
                            direction="inbound", reason=reason)
            got = tls_exchange(ip, SIP_TLS_PORT, options, ca=ca.ca_path, cert=bad)
            assert not got.startswith("SIP/"), f"{reason}: a SIP answer came back: {got!r}"
            # Refused by the routing node (the relaying node never opened TLS).
            wait_until(lambda: metric(cluster, routing, "herald_sip_tls_failures_total",
                                      direction="inbound", reason=reason) == before + 1,
                       5, f"{reason} counted on the routing node")
            assert metric(cluster, other, "herald_sip_tls_failures_total",
                          direction="inbound", reason=reason) == 0
        assert relayed(cluster, other, "tls") == 4
        assert tls_exchange(ip, SIP_TLS_PORT, options, ca=ca.ca_path, cert=good).startswith(
            "SIP/2.0 200")
    finally:
        cluster.stop()
