"""The guides' SIP federation verification procedure (004 ch.18 "Verify SIP Federation
Configuration", VER-1), scripted against Kamailio (`sip_fed.py`) over mutual TLS, preceded by the
configuration checks of the troubleshooting chapter (004 ch.19 "Unable to Get Availability
Exchange", "Problems Sending and Receiving IMs"), each mapped to a Herald command or
observation.

Roles: L = a Herald user (slixmpp, homed away from the routing node); R1, R2 = users of
kam.test (the guide's two Office Communicator clients): small SIP user agents (`Watcher`)
registered at Kamailio, their presence published to Kamailio's presence server (SIPp PUBLISH).
Herald reaches kam.test by DNS SRV (no static route), through a test dnsmasq.

Step 11c diverges from the guide and is asserted as Herald behaves: after L blocks R1, L's own
IM to R1 is refused (XEP-0191 not-acceptable), where the guide says L can still IM R1 (see the
step's comment).

Steps 12-13 (R1 blocks L) are not scripted: Kamailio's presence server here authorizes every
watcher (`force_active`, no XCAP pres-rules), so a SIP user cannot block one. How Herald takes
a SIP-side refusal (`terminated;reason=rejected`, 403/603 → `unsubscribed`) is covered by the
unit tests in node/src/sip/subs/tests.rs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid

import pytest

from sip_fed import KAM_DOMAIN, SIP_TLS_PORT, SipFed, pidf, sip_fed  # noqa: F401 - fixture
from test_sip import metric
from test_sip_presence import WAIT, Watcher, basic
from test_sip_tls import total, user_away_from
from xmpp_client import Client, bare, run


@pytest.fixture(autouse=True)
def _peers_installed() -> None:
    assert shutil.which("sipp"), "SIPp is not installed: apt-get install sip-tester"
    assert shutil.which("kamailio"), ("Kamailio is not installed: apt-get install kamailio "
                                      "kamailio-tls-modules kamailio-presence-modules")


def rows(report: str, check: str) -> dict[str, dict]:
    """The troubleshooter's rows of `check`, by subject."""
    return {r["subject"]: r for r in json.loads(report)["checks"] if r["check"] == check}


def publish(w: Watcher, aor: str, *, note: str, activity: str = "",
            etag: str = "") -> str:
    """`aor`'s client publishes its presence to Kamailio's presence server (a new publication,
    or with `etag` a modification of that one, RFC 3903); returns the SIP-ETag."""
    saved = w.dialog
    w.dialog = {"frm": aor, "to": aor, "call_id": f"{uuid.uuid4().hex}@{w.ip}",
                "tag": uuid.uuid4().hex[:10], "cseq": 0}
    extra = ("Event: presence\r\nExpires: 3600\r\nContent-Type: application/pidf+xml\r\n"
             + (f"SIP-If-Match: {etag}\r\n" if etag else ""))
    try:
        resp = w._request("PUBLISH", f"sip:{aor}", f"<sip:{aor}>", [], extra,
                          pidf(aor, "open", note, activity))
    finally:
        w.dialog = saved
    assert resp.status == 200, resp
    return resp.get("sip-etag") or ""


def test_sip_verification_procedure(sip_fed) -> None:
    fed: SipFed = sip_fed(route=False, dns=True)
    c = fed.cluster
    assert fed.dns is not None
    # Our own published record (004 ch.4 "DNS Configuration for SIP Federation"): the routing
    # node's name for every local domain, as the remote side would look it up.
    fed.dns.add_srv(f"_sipfederationtls._tcp.{c.domain}", f"sip.{c.domain}", SIP_TLS_PORT)
    fed.dns.add_host(f"sip.{c.domain}", c.ip(fed.routing))
    fed.dns.restart()

    # -- Configuration checks (004 ch.19), before any traffic --------------------------------
    # "The Federated Domain may not have been added": `sip-domain list` shows it.
    assert KAM_DOMAIN in c.cli(None, "sip-domain", "list")
    # Its automatic incoming ACL entry (SIP-3) and the entry admitting Kamailio's TLS name.
    acl = c.cli(None, "acl", "list", "-o", "json")
    assert acl.count(KAM_DOMAIN) >= 2, acl
    # "The certificate may have been configured incorrectly": the peer's TLS subject is listed.
    assert KAM_DOMAIN in c.cli(None, "tls-peer", "list")
    # "Perform a check of the DNS SRV and ensure that both sides can resolve the domain"
    # (nslookup; set type=srv): theirs and ours.
    theirs = fed.dns.query(f"_sipfederationtls._tcp.{KAM_DOMAIN}", "SRV")
    assert [(a[2], a[3].rstrip(".")) for a in theirs] == [(SIP_TLS_PORT, KAM_DOMAIN)], theirs
    ours = fed.dns.query(f"_sipfederationtls._tcp.{c.domain}", "SRV")
    assert [a[2] for a in ours] == [SIP_TLS_PORT], ours
    # The troubleshooter (TRB) agrees: kam.test has a route (by SRV, no static route), our SRV
    # record names only this cluster, and the next hop's certificate names a tls-peer subject.
    report = c.cli_raw(None, "troubleshoot", "--dns-resolver", fed.dns.address, "--probe",
                       "--ca-file", str(fed.ca.ca_path), "-o", "json").stdout
    route = rows(report, "sip-route")
    assert route[KAM_DOMAIN]["verdict"] == "pass", route
    assert "SRV" in route[KAM_DOMAIN]["detail"], route
    srv = {s: r for s, r in rows(report, "dns-srv").items() if "_sipfederationtls" in s}
    assert srv and all(r["verdict"] == "pass" for r in srv.values()), srv

    alice, apw = user_away_from(fed, "alice", fed.routing)
    r1_uri, r2_uri = f"r1@{KAM_DOMAIN}", f"r2@{KAM_DOMAIN}"
    r1 = Watcher(fed.ua.ip, 5081, (fed.kam.ip, fed.kam.port))
    r2 = Watcher(fed.ua.ip, 5082, (fed.kam.ip, fed.kam.port))

    async def approve(a: Client, w: Watcher, uri: str, what: str) -> None:
        """`uri` subscribes to L: pending; L accepts; `uri` sees L available."""
        resp = await asyncio.to_thread(w.subscribe, uri, alice)
        assert resp.status == 202, f"{what}: {resp}"
        await a.expect_presence(uri, f"{what}: L is asked to accept", ptype="subscribe")
        mark = w.mark()
        a.send_presence(pto=uri, ptype="subscribed")
        await asyncio.to_thread(
            w.notify, lambda m: m.state.startswith("active") and basic(m) == "open",
            f"{what}: {uri} sees L available", mark)

    async def watch(a: Client, uri: str, what: str) -> None:
        """L subscribes to `uri` (Kamailio's presence server answers for it)."""
        a.send_presence(pto=uri, ptype="subscribe")
        await a.expect_presence(uri, f"{what}: approved", ptype="subscribed", timeout=WAIT)
        await a.expect_presence(uri, f"{what}: L sees {uri} available", ptype="available",
                                timeout=WAIT)

    async def body() -> None:
        etags = {}
        for user, port, w in (("r1", 5081, r1), ("r2", 5082, r2)):
            await asyncio.to_thread(fed.ua.register, user, port)
            etags[user] = await asyncio.to_thread(publish, w, f"{user}@{KAM_DOMAIN}",
                                                  note=f"{user} here")
        # Step 1: L signs in.
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(c.ip(c.home_node(alice)))
            await a.online(status="L here")
            # Step 2: R1 and R2 signed in (registered, presence published) above.

            # Step 3: R1 adds L; (a) L is asked; (b) after L accepts, both see each other.
            await approve(a, r1, r1_uri, "step 3")
            await watch(a, r1_uri, "step 3b")

            # Step 4: L adds R2; (a) L sees R2's availability; (b) R2's side is told (the
            # SUBSCRIBE from L reached R2's presence server).
            await watch(a, r2_uri, "step 4")
            assert f"REQ SUBSCRIBE sip:{r2_uri} from sip:{alice}" in fed.kam.log_text()
            await approve(a, r2, r2_uri, "step 4 (R2 adds L back, for step 11)")

            # Step 5: availability toggles on both sides are seen on the other.
            marks = (r1.mark(), r2.mark())
            a.send_presence(pshow="dnd", pstatus="step 5 busy")
            for w, mark in zip((r1, r2), marks):
                await asyncio.to_thread(w.notify, lambda m: "busy" in m.body, "step 5: L busy",
                                        mark)
            # R1 goes away (its publication modified, RPID activity): L sees R1's change.
            await asyncio.to_thread(publish, r1, r1_uri, note="step 5 r1 lunch",
                                    activity="away", etag=etags["r1"])
            await a.expect_presence(r1_uri, "step 5: L sees R1's change",
                                    status="step 5 r1 lunch", timeout=WAIT)

            # Steps 6-7: L sends an IM to R1; it appears at R1 (session mode: INVITE, MESSAGE).
            mark = r1.mark()
            a.chat(r1_uri, "step 6: hello R1")
            m = await asyncio.to_thread(r1.notify, lambda m: m.start.startswith("MESSAGE")
                                        and m.body == "step 6: hello R1", "step 7", mark)
            invite = next(g for g in r1.got[mark:] if g.start.startswith("INVITE"))
            assert m.get("call-id") == invite.get("call-id"), m
            # Step 8: both close the IM window: R1's client ends the session (BYE).
            r1.accept_session(invite, r1_uri, alice)
            bye = await asyncio.to_thread(r1.in_dialog, "BYE")
            assert bye.status == 200, bye
            assert not await a.drain(a.message_errors, 0.5), "step 8: a message bounced"

            # Steps 9-10: R1 sends an IM to L (a new session from R1's side); it appears at L.
            resp = await asyncio.to_thread(r1.invite, r1_uri, alice)
            assert resp.status == 200, resp
            r = await asyncio.to_thread(r1.in_dialog, "MESSAGE", "step 9: hello L")
            assert r.status == 200, r
            got = await a.expect_messages(r1_uri, 1, timeout=WAIT)
            assert got[0]["body"] == "step 9: hello L", got

            # Step 11: L blocks R1 (server side, XEP-0191).
            marks = (r1.mark(), r2.mark())
            await a.block(r1_uri)
            await asyncio.to_thread(c.wait_converged, c.nodes)
            # (b) R1 sees L offline (polite blocking), R2 still sees L's availability.
            await asyncio.to_thread(r1.notify, lambda m: basic(m) == "closed",
                                    "step 11b: R1 sees L offline", marks[0])
            a.send_presence(pstatus="step 11 back")
            await asyncio.to_thread(r2.notify, lambda m: basic(m) == "open"
                                    and "step 11 back" in m.body,
                                    "step 11b: R2 still sees L", marks[1])
            leaked = [g for g in r1.got[marks[0]:] if g.is_request and basic(g) == "open"]
            assert not leaked, f"step 11b: R1 saw L available: {leaked}"
            # (c) R1 still appears online to L ...
            offline = [p for p in await a.drain(a.presences, 0.5)
                       if bare(str(p["from"])) == r1_uri and p["type"] == "unavailable"]
            assert not offline, offline
            # ... "and you should be able to initiate an IM to the blocked user": NOT what
            # Herald does. Its block list is XEP-0191 for every contact, so L's own message to
            # R1 is refused at L's home (not-acceptable), as VER-2 11c wants for XMPP contacts.
            # Kept as observed and reported; exempting SIP contacts would be a change to
            # node/src/im/message.rs (the user's state), not to the SIP edge.
            mark = r1.mark()
            a.chat(r1_uri, "step 11c: to blocked R1")
            err = await a.expect(a.message_errors, lambda m: bare(str(m["from"])) == r1_uri,
                                 "step 11c: the IM to the blocked contact", WAIT)
            assert err["error"]["condition"] == "not-acceptable", err
            await asyncio.sleep(0.5)
            assert not [g for g in r1.got[mark:] if g.start.startswith("MESSAGE")]
        finally:
            await a.logout()
            r1.close()
            r2.close()

    run(body(), timeout=120)

    # Logs and metrics say the same (004 ch.19: what to look at when a step fails).
    assert metric(c, fed.routing, "herald_sip_requests_total", direction="inbound",
                  method="SUBSCRIBE", status="202") >= 2
    assert metric(c, fed.routing, "herald_sip_requests_total", direction="outbound",
                  method="INVITE", status="200") >= 1
    assert metric(c, fed.routing, "herald_sip_messages_total", direction="inbound") >= 1
    assert total(fed, "herald_sip_messages_total", direction="outbound") >= 1
    assert total(fed, "herald_sip_dns_lookups_total", result="found") >= 1
    for reason in ("domain_not_federated", "acl", "tls_peer", "bad_certificate", "no_route"):
        assert total(fed, "herald_sip_failures_total", reason=reason) == 0, reason
