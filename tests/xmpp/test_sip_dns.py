"""Outbound SIP routing beyond static routes, against Kamailio (`sip_fed.py`) over mutual TLS:

- DNS SRV: no static route for kam.test; the nodes resolve through a test dnsmasq
  (`--dns-resolver`) where `_sipfederationtls._tcp.kam.test` names dead.kam.test:5061
  (priority 0, an address nobody serves) and kam.test:5061 (priority 10, Kamailio's address).
  A Herald user's IM reaches a SIP user registered at Kamailio: the first target refuses the
  connection, the message goes to the next one without an error.
- A federated domain with neither a static route nor an SRV record: the sender gets
  `remote-server-not-found` with a text naming what was missing, and
  `herald_sip_failures_total{direction="outbound",reason="no_route"}` counts it.
- The default federation routing domain (AOL-type domains, RTE-7): `hosted.test` (type aol, no
  route, no SRV) is reached through the default federation routing domain set to kam.test —
  Kamailio receives the MESSAGE for carol@hosted.test (and, not serving that domain, refuses it
  with 403, which comes back to the sender as an error naming the peer's answer).

Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from sip_fed import KAM_DOMAIN, SipFed, address, sip_fed  # noqa: F401 - fixture
from test_sip import metric
from test_sip_tls import total, user_away_from
from xmpp_client import Client, bare, run


@pytest.fixture(autouse=True)
def _peers_installed() -> None:
    assert shutil.which("sipp"), "SIPp is not installed: apt-get install sip-tester"
    assert shutil.which("kamailio"), ("Kamailio is not installed: apt-get install kamailio "
                                      "kamailio-tls-modules kamailio-presence-modules")
    assert shutil.which("dnsmasq") or shutil.which("/usr/sbin/dnsmasq"), (
        "dnsmasq is not installed: apt-get install dnsmasq-base")


def test_outbound_im_by_dns_srv_and_the_default_routing_domain(sip_fed) -> None:
    fed: SipFed = sip_fed(route=False, dns=True)
    c = fed.cluster
    assert fed.dns is not None
    # A better SRV target (lower priority number) that nobody serves: Herald tries it first,
    # then the next one (RFC 2782 order, the next target when one cannot be reached).
    fed.dns.add_srv(f"_sipfederationtls._tcp.{KAM_DOMAIN}", f"dead.{KAM_DOMAIN}", 5061,
                    priority=0)
    fed.dns.add_host(f"dead.{KAM_DOMAIN}", address(c, 202))
    fed.dns.srv = [(n, t, p, 10 if t == KAM_DOMAIN else pr, w) for n, t, p, pr, w in fed.dns.srv]
    fed.dns.restart()
    # What the guides' "nslookup; set type=srv" step shows, from the test DNS.
    answers = fed.dns.query(f"_sipfederationtls._tcp.{KAM_DOMAIN}", "SRV")
    assert sorted((a[0], a[3].rstrip(".")) for a in answers) == [
        (0, f"dead.{KAM_DOMAIN}"), (10, KAM_DOMAIN)], answers
    assert "kamailio" not in c.cli(None, "static-route", "list"), "no static route here"
    c.cli(None, "sip-domain", "add", "nodns.test", "--type", "generic-sip")
    c.cli(None, "sip-domain", "add", "hosted.test", "--type", "aol")
    c.cli(None, "federation-routing", "set", "--default-routing-domain", KAM_DOMAIN)
    c.wait_converged(c.nodes)
    # The troubleshooter sees the same routes: kam.test by SRV, hosted.test through the
    # default federation routing domain, nodns.test none.
    report = json.loads(c.cli_raw(None, "troubleshoot", "--dns-resolver", fed.dns.address,
                                  "-o", "json").stdout)
    routes = {r["subject"]: r for r in report["checks"] if r["check"] == "sip-route"}
    assert routes[KAM_DOMAIN]["verdict"] == "pass", routes
    assert routes["hosted.test"]["verdict"] == "pass", routes
    assert f"default federation routing domain {KAM_DOMAIN}" in routes["hosted.test"]["detail"]
    assert routes["nodns.test"]["verdict"] == "fail", routes
    alice, apw = user_away_from(fed, "alice", fed.routing)

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(c.ip(c.home_node(alice)))
            await a.online()

            # SRV: alice -> home -> routing node -> SRV kam.test -> Kamailio (TLS) -> carol.
            await asyncio.to_thread(fed.ua.register, "carol", 5093)
            uas = fed.ua.message_server(5093)
            try:
                a.chat(f"carol@{KAM_DOMAIN}", "found you through DNS SRV")
                msgs = await asyncio.to_thread(uas.wait)
            finally:
                uas.stop()
            assert "found you through DNS SRV" in msgs, msgs[-2000:]
            assert "SIP/2.0/TLS" in msgs, msgs[-2000:]
            errors = await a.drain(a.message_errors, 1.0)
            assert not errors, [str(e) for e in errors]

            # No static route and no SRV record: a clear error.
            a.chat("zed@nodns.test", "nobody knows the way")
            err = await a.expect(a.message_errors,
                                 lambda m: bare(m["from"]) == "zed@nodns.test",
                                 "an error for the domain without route or SRV", 20)
            assert err["error"]["condition"] == "remote-server-not-found", err
            text = err["error"]["text"]
            assert "no static route" in text and "_sipfederationtls._tcp.nodns.test" in text, text

            # AOL chain: hosted.test has no route and no SRV; the default federation routing
            # domain (kam.test) does, so the MESSAGE goes to Kamailio.
            a.chat("carol@hosted.test", "through the clearing house")
            err = await a.expect(a.message_errors,
                                 lambda m: bare(m["from"]) == "carol@hosted.test",
                                 "Kamailio's refusal of a domain it does not serve", 20)
            assert "403" in (err["error"]["text"] or ""), err
        finally:
            await a.logout()

    run(body(), timeout=90)
    log = fed.kam.log_text()
    assert "REQ MESSAGE sip:carol@hosted.test" in log, log[-2000:]
    assert total(fed, "herald_sip_dns_lookups_total", result="found") >= 1
    assert total(fed, "herald_sip_dns_lookups_total", result="none") >= 1
    assert metric(c, fed.routing, "herald_sip_failures_total", direction="outbound",
                  reason="no_route") >= 1
    assert total(fed, "herald_sip_messages_total", direction="outbound") >= 1
    # The first target was tried and passed over.
    assert total(fed, "herald_sip_rerouted_total") >= 1
