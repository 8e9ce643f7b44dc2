"""SIP presence (SUBSCRIBE/NOTIFY, RFC 6665/3856, PIDF) between Herald users and users of a
real SIP domain: Kamailio (its presence server, TLS and record-routing; `sip_fed.py`) federating
with a 3-node Herald cluster over mutual TLS.

- A SIP watcher subscribes to a Herald user homed away from the routing node: pending (the user,
  a slixmpp client, gets the request), then active once approved, with NOTIFYs carrying the
  mapped PIDF as the user changes state (Do Not Disturb reaches SIP as busy); a block turns the
  watcher's view to offline (polite: the subscription stays active); unsubscribe terminates it.
- A Herald user subscribes to a SIP user: Kamailio's presence server accepts, its NOTIFY carries
  what the SIP user published (SIPp PUBLISH), and the XMPP client sees the subscription approved
  and the SIP user's presence and note.
- A watcher from a domain that is not federated gets 403, and nobody is troubled.

The SIP watcher is a small UDP user agent written here (SIPp's fixed scenarios cannot wait for
"a NOTIFY that says X"); it only builds requests and answers NOTIFYs with 200 — Kamailio routes
everything. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
import uuid
from typing import Callable, Optional

import pytest

from sip_fed import KAM_DOMAIN, SipFed, sip_fed  # noqa: F401 - fixture
from test_sip import metric
from test_sip_tls import user_away_from
from xmpp_client import Client, run

WAIT = 15.0


@pytest.fixture(autouse=True)
def _peers_installed() -> None:
    assert shutil.which("sipp"), "SIPp is not installed: apt-get install sip-tester"
    assert shutil.which("kamailio"), ("Kamailio is not installed: apt-get install kamailio "
                                      "kamailio-tls-modules kamailio-presence-modules")


class SipMsg:
    """One SIP message as received: start line, headers (lowercase names, in order), body."""

    COMPACT = {"f": "from", "t": "to", "i": "call-id", "m": "contact", "v": "via",
               "l": "content-length", "c": "content-type", "o": "event"}

    def __init__(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        self.start = lines[0]
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            self.headers.append((self.COMPACT.get(name, name), value.strip()))
        self.body = body.decode(errors="replace")

    def get(self, name: str) -> Optional[str]:
        return next((v for n, v in self.headers if n == name), None)

    def all(self, name: str) -> list[str]:
        out: list[str] = []
        for n, v in self.headers:
            if n == name:
                out.extend(p.strip() for p in re.split(r",(?=\s*<)", v))
        return out

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0")

    @property
    def status(self) -> int:
        return int(self.start.split()[1]) if not self.is_request else 0

    @property
    def state(self) -> str:
        return self.get("subscription-state") or ""

    def __repr__(self) -> str:
        return f"<{self.start} | {self.state} | {self.body[:200]!r}>"


class Watcher:
    """A SIP user agent on UDP `ip:port` of Kamailio's domain that subscribes to presence
    through Kamailio and answers every NOTIFY, MESSAGE and BYE with 200, and every INVITE with
    `invite_code` (200 with an `m=message` answer, its Contact and the Record-Route set: an IM
    session; else a refusal)."""

    invite_code = 200

    def __init__(self, ip: str, port: int, kam: tuple[str, int]) -> None:
        self.ip, self.port, self.kam = ip, port, kam
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.2)
        self.got: list[SipMsg] = []
        self.cond = threading.Condition()
        self.stop_flag = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        self.dialog: dict = {}

    def close(self) -> None:
        self.stop_flag = True
        self.thread.join(2)
        self.sock.close()

    def _loop(self) -> None:
        while not self.stop_flag:
            try:
                raw, addr = self.sock.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            m = SipMsg(raw)
            if m.is_request and m.start.split()[0] == "INVITE":
                self._answer_invite(m, addr)
                continue
            if m.is_request and m.start.split()[0] == "ACK":
                with self.cond:
                    self.got.append(m)
                    self.cond.notify_all()
                continue
            if m.is_request and m.start.split()[0] in ("NOTIFY", "MESSAGE", "BYE"):
                vias = "".join(f"Via: {v}\r\n" for n, v in m.headers if n == "via")
                ok = (f"SIP/2.0 200 OK\r\n{vias}From: {m.get('from')}\r\nTo: {m.get('to')}\r\n"
                      f"Call-ID: {m.get('call-id')}\r\nCSeq: {m.get('cseq')}\r\n"
                      "Content-Length: 0\r\n\r\n")
                self.sock.sendto(ok.encode(), addr)
                # A retransmission is answered again but kept once.
                with self.cond:
                    if not any(g.is_request and g.get("cseq") == m.get("cseq")
                               and g.get("call-id") == m.get("call-id") for g in self.got):
                        self.got.append(m)
                    self.cond.notify_all()
            elif not m.is_request:
                with self.cond:
                    self.got.append(m)
                    self.cond.notify_all()

    def _answer_invite(self, m: SipMsg, addr: tuple[str, int]) -> None:
        """Answers an INVITE (a retransmission gets the same answer, and is kept once)."""
        with self.cond:
            first = next((g for g in self.got if g.is_request and g.start.startswith("INVITE")
                          and g.get("call-id") == m.get("call-id")), None)
            if first is None:
                m.uas_tag = uuid.uuid4().hex[:10]
                self.got.append(m)
                self.cond.notify_all()
            tag = (first or m).uas_tag
        vias = "".join(f"Via: {v}\r\n" for n, v in m.headers if n == "via")
        rrs = "".join(f"Record-Route: {v}\r\n" for n, v in m.headers if n == "record-route")
        user = re.search(r"sip:([^@>;]+)@", m.start).group(1)
        if self.invite_code == 200:
            sdp = (f"v=0\r\no=- 0 0 IN IP4 {self.ip}\r\ns=session\r\nc=IN IP4 {self.ip}\r\n"
                   f"t=0 0\r\nm=message {self.port} sip null\r\n")
            extra = (f"{rrs}Contact: <sip:{user}@{self.ip}:{self.port};transport=udp>\r\n"
                     "Content-Type: application/sdp\r\n")
            status = "200 OK"
        else:
            sdp, extra, status = "", "", f"{self.invite_code} Refused"
        resp = (f"SIP/2.0 {status}\r\n{vias}From: {m.get('from')}\r\n"
                f"To: {m.get('to')};tag={tag}\r\nCall-ID: {m.get('call-id')}\r\n"
                f"CSeq: {m.get('cseq')}\r\n{extra}Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}")
        self.sock.sendto(resp.encode(), addr)

    def accept_session(self, invite: SipMsg, frm: str, to: str) -> None:
        """Takes the dialog of an INVITE this UA answered 200 as its own (UAS side: the route
        set is the Record-Route set in order), so that `in_dialog` sends inside it."""
        self.dialog = {"frm": frm, "to": to, "call_id": invite.get("call-id"),
                       "tag": invite.uas_tag, "cseq": 100,
                       "to_tag": re.search(r"tag=([^;>\s]+)", invite.get("from") or "").group(1),
                       "target": re.search(r"<([^>]+)>", invite.get("contact") or "").group(1),
                       "routes": invite.all("record-route")}

    def _wait(self, pred: Callable[[SipMsg], bool], what: str, timeout: float,
              start: int = 0) -> SipMsg:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.got[start:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {what} within {timeout}s; got {self.got}")
                self.cond.wait(left)

    def mark(self) -> int:
        with self.cond:
            return len(self.got)

    def subscribe(self, frm: str, to: str, *, expires: int = 600) -> SipMsg:
        """SUBSCRIBE (Event: presence) from `frm` to `to` through Kamailio; returns the final
        response (the dialog is kept for `refresh`)."""
        call_id, tag = f"{uuid.uuid4().hex}@{self.ip}", uuid.uuid4().hex[:10]
        self.dialog = {"frm": frm, "to": to, "call_id": call_id, "tag": tag, "cseq": 0}
        return self._send_subscribe(f"sip:{to}", [], f"<sip:{to}>", expires)

    def refresh(self, expires: int) -> SipMsg:
        """SUBSCRIBE inside the dialog (Expires: 0 unsubscribes)."""
        d = self.dialog
        return self._send_subscribe(d["target"], d["routes"], f"<sip:{d['to']}>;tag={d['to_tag']}",
                                    expires)

    def _send_subscribe(self, ruri: str, routes: list[str], to: str, expires: int) -> SipMsg:
        resp = self._request("SUBSCRIBE", ruri, to, routes,
                             "Event: presence\r\nAccept: application/pidf+xml\r\n"
                             f"Expires: {expires}\r\n")
        self._learn_dialog(resp)
        return resp

    def _learn_dialog(self, resp: SipMsg) -> None:
        """From the first 2xx: the remote tag, target and route set (RFC 3261 §12.1.2)."""
        d = self.dialog
        if 200 <= resp.status < 300 and "to_tag" not in d:
            d["to_tag"] = re.search(r"tag=([^;>\s]+)", resp.get("to") or "").group(1)
            d["target"] = re.search(r"<([^>]+)>", (resp.get("contact") or "")).group(1)
            d["routes"] = list(reversed(resp.all("record-route")))

    def notify(self, pred: Callable[[SipMsg], bool], what: str, start: int = 0,
               timeout: float = WAIT) -> SipMsg:
        return self._wait(lambda m: m.is_request and pred(m), what, timeout, start)

    # -- IM sessions (session mode) -------------------------------------------------------

    def _request(self, method: str, ruri: str, to: str, routes: list[str], extra: str = "",
                 body: str = "") -> SipMsg:
        d = self.dialog
        d["cseq"] += 1
        user = d["frm"].split("@")[0]
        route = "".join(f"Route: {r}\r\n" for r in routes)
        req = (f"{method} {ruri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
               f"{route}Max-Forwards: 70\r\nFrom: <sip:{d['frm']}>;tag={d['tag']}\r\nTo: {to}\r\n"
               f"Call-ID: {d['call_id']}\r\nCSeq: {d['cseq']} {method}\r\n"
               f"Contact: <sip:{user}@{self.ip}:{self.port};transport=udp>\r\n{extra}"
               f"Content-Length: {len(body.encode())}\r\n\r\n{body}")
        start = self.mark()
        self.sock.sendto(req.encode(), self.kam)
        if method == "ACK":
            return SipMsg(req.encode())
        cseq = f"{d['cseq']} {method}"
        return self._wait(lambda m: not m.is_request and m.status >= 200
                          and m.get("cseq") == cseq and m.get("call-id") == d["call_id"],
                          f"a final response to {cseq}", WAIT, start)

    def invite(self, frm: str, to: str) -> SipMsg:
        """INVITE offering an IM session (m=message ... sip null); ACKs a 2xx."""
        self.dialog = {"frm": frm, "to": to, "call_id": f"{uuid.uuid4().hex}@{self.ip}",
                       "tag": uuid.uuid4().hex[:10], "cseq": 0}
        sdp = (f"v=0\r\no=- 0 0 IN IP4 {self.ip}\r\ns=session\r\nc=IN IP4 {self.ip}\r\n"
               f"t=0 0\r\nm=message {self.port} sip null\r\na=accept-types:text/plain\r\n")
        resp = self._request("INVITE", f"sip:{to}", f"<sip:{to}>", [],
                             "Content-Type: application/sdp\r\n", sdp)
        d = self.dialog
        self._learn_dialog(resp)
        if 200 <= resp.status < 300:
            d["cseq"] -= 1  # the ACK of a 2xx carries the INVITE's CSeq number
            self._request("ACK", d["target"], f"<sip:{to}>;tag={d['to_tag']}", d["routes"])
        return resp

    def in_dialog(self, method: str, body: str = "") -> SipMsg:
        d = self.dialog
        extra = "Content-Type: text/plain\r\n" if body else ""
        return self._request(method, d["target"], f"<sip:{d['to']}>;tag={d['to_tag']}",
                             d["routes"], extra, body)


def basic(m: SipMsg) -> Optional[str]:
    found = re.search(r"<basic>(\w+)</basic>", m.body)
    return found.group(1) if found else None


def test_sip_watcher_pending_approved_state_changes_block_and_unsubscribe(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    watcher = Watcher(fed.ua.ip, 5095, (fed.kam.ip, fed.kam.port))
    dave = f"dave@{KAM_DOMAIN}"

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            login = next(n for n in fed.cluster.nodes if n != fed.routing)
            await a.login(fed.cluster.ip(login))
            await a.online(status="at my desk")

            # Unknown watcher: 202, a pending NOTIFY without a document, a request to alice.
            resp = await asyncio.to_thread(watcher.subscribe, dave, alice)
            assert resp.status == 202, resp
            n = await asyncio.to_thread(watcher.notify, lambda m: m.state.startswith("pending"),
                                        "a pending NOTIFY")
            assert basic(n) is None, n
            await a.expect_presence(dave, "the SIP watcher's subscription request",
                                    ptype="subscribe")

            # Approved: active, open, with alice's status text as the note.
            mark = watcher.mark()
            a.send_presence(pto=dave, ptype="subscribed")
            n = await asyncio.to_thread(
                watcher.notify, lambda m: m.state.startswith("active") and basic(m) == "open",
                "an active NOTIFY showing alice open", mark)
            assert "at my desk" in n.body, n.body
            assert f"entity=\"sip:{alice}\"" in n.body, n.body
            # The rule is stored: alice's roster now says dave receives her presence.
            roster = await a.roster_items()
            assert roster.get(dave, {}).get("subscription") in ("from", "both"), roster

            # Do Not Disturb reaches SIP as busy (the Lync table).
            mark = watcher.mark()
            a.send_presence(pshow="dnd", pstatus="heads down")
            n = await asyncio.to_thread(watcher.notify, lambda m: "busy" in m.body,
                                        "a NOTIFY with the busy activity", mark)
            assert basic(n) == "open" and "heads down" in n.body, n.body

            # A refresh inside the dialog: 200 and the state again.
            mark = watcher.mark()
            resp = await asyncio.to_thread(watcher.refresh, 600)
            assert resp.status == 200, resp
            await asyncio.to_thread(watcher.notify, lambda m: "busy" in m.body,
                                    "the NOTIFY after the refresh", mark)

            # Polite block: the watcher sees alice offline, the subscription stays active.
            mark = watcher.mark()
            await a.block(dave)
            n = await asyncio.to_thread(watcher.notify, lambda m: basic(m) == "closed",
                                        "a NOTIFY showing alice offline after the block", mark)
            assert n.state.startswith("active"), n
            mark = watcher.mark()
            a.send_presence(pstatus="back")
            await a.sync()
            await asyncio.sleep(1.0)
            leaked = [m for m in watcher.got[mark:] if m.is_request and basic(m) == "open"]
            assert not leaked, leaked
            # A new subscription from the blocked watcher: accepted, offline, alice untroubled.
            resp = await asyncio.to_thread(watcher.subscribe, dave, alice)
            assert resp.status == 200, resp
            await asyncio.to_thread(
                watcher.notify, lambda m: m.get("call-id") == watcher.dialog["call_id"]
                and m.state.startswith("active") and basic(m) == "closed",
                "the blocked watcher's new subscription showing offline")
            requests = [p for p in await a.drain(a.presences, 1.0) if p["type"] == "subscribe"]
            assert not requests, requests

            # Unsubscribe: 200 and a terminated NOTIFY.
            mark = watcher.mark()
            resp = await asyncio.to_thread(watcher.refresh, 0)
            assert resp.status == 200, resp
            await asyncio.to_thread(watcher.notify, lambda m: m.state.startswith("terminated"),
                                    "the terminated NOTIFY", mark)
        finally:
            await a.logout()
            watcher.close()

    run(body(), timeout=120)
    c = fed.cluster
    assert metric(c, fed.routing, "herald_sip_presence_requests_total", method="NOTIFY") >= 5
    # Every subscription request reached the routing node over TLS from Kamailio.
    assert metric(c, fed.routing, "herald_sip_requests_total", direction="inbound",
                  method="SUBSCRIBE", status="202") >= 1


def test_herald_user_watches_a_sip_user_through_kamailio(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    carol = f"carol@{KAM_DOMAIN}"

    async def body() -> None:
        await asyncio.to_thread(fed.ua.publish, "carol", basic="open", note="In the lab")
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(fed.cluster.ip(fed.cluster.home_node(alice)))
            await a.online()
            a.send_presence(pto=carol, ptype="subscribe")
            await a.expect_presence(carol, "carol's approval (Kamailio's presence server)",
                                    ptype="subscribed", timeout=WAIT)
            p = await a.expect_presence(carol, "carol's presence from her PUBLISH",
                                        ptype="available", timeout=WAIT)
            assert p["status"] == "In the lab", p
            roster = await a.roster_items()
            assert roster[carol]["subscription"] in ("to", "both"), roster
        finally:
            await a.logout()

    run(body(), timeout=90)
    c = fed.cluster
    assert metric(c, fed.routing, "herald_sip_presence_requests_total", method="SUBSCRIBE") >= 1
    assert metric(c, fed.routing, "herald_sip_subscriptions", direction="outbound",
                  state="any") >= 1
    # Herald's SUBSCRIBE reached Kamailio's presence server over TLS from the routing node.
    log = fed.kam.log_text()
    assert f"REQ SUBSCRIBE sip:{carol}" in log, log[-2000:]


def test_im_session_mode_both_ways_and_a_blocked_sender(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    ua = Watcher(fed.ua.ip, 5097, (fed.kam.ip, fed.kam.port))
    erin = f"erin@{KAM_DOMAIN}"

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(fed.cluster.ip(fed.cluster.home_node(alice)))
            await a.online()
            # INVITE (session mode) through Kamailio: 200 with an m=message answer.
            resp = await asyncio.to_thread(ua.invite, erin, alice)
            assert resp.status == 200, resp
            assert "m=message" in resp.body, resp.body
            # MESSAGEs inside the session reach alice.
            for text in ("first in session", "second in session"):
                r = await asyncio.to_thread(ua.in_dialog, "MESSAGE", text)
                assert r.status == 200, r
            got = await a.expect_messages(erin, 2, timeout=WAIT)
            assert [m["body"] for m in got] == ["first in session", "second in session"]
            # alice's reply goes inside the same session (same Call-ID) to erin.
            mark = ua.mark()
            a.chat(erin, "reply inside the session")
            m = await asyncio.to_thread(
                ua.notify, lambda m: m.start.startswith("MESSAGE"), "alice's reply", mark)
            assert m.get("call-id") == ua.dialog["call_id"], m
            assert "reply inside the session" in m.body, m.body
            # BYE ends it; a MESSAGE in the ended session gets 481.
            r = await asyncio.to_thread(ua.in_dialog, "BYE")
            assert r.status == 200, r
            r = await asyncio.to_thread(ua.in_dialog, "MESSAGE", "after bye")
            assert r.status == 481, r
            # A blocked sender: INVITE and page-mode MESSAGE get 480, as if alice were offline.
            await a.block(erin)
            # The block is stored by alice's home node; the routing node judges the INVITE by
            # its applied copy of the store: wait until every node applied it.
            await asyncio.to_thread(fed.cluster.wait_converged, fed.cluster.nodes)
            resp = await asyncio.to_thread(ua.invite, erin, alice)
            assert resp.status == 480, resp
            await asyncio.to_thread(fed.ua.message, alice, erin, "blocked page mode", 480)
            leaked = [m for m in await a.drain(a.messages, 1.0) if m["body"]]
            assert not leaked, [m["body"] for m in leaked]
        finally:
            await a.logout()
            ua.close()

    run(body(), timeout=90)
    assert metric(fed.cluster, fed.routing, "herald_sip_requests_total", direction="inbound",
                  method="INVITE", status="200") >= 1


def test_routing_node_killed_the_fallback_takes_over(sip_fed) -> None:
    """kill -9 the routing node: within seconds the next node of `routing-node set` serves SIP
    (Kamailio tries the nodes in that order); a watcher subscribing again is served by it."""
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    order = [fed.routing] + [n for n in fed.cluster.nodes if n != fed.routing]
    fallback = next(n for n in order[1:] if n != fed.cluster.home_node(alice))
    # Make the fallback the first live one after the routing node.
    fed.cluster.cli(None, "routing-node", "set", str(fed.routing), str(fallback),
                    *[str(n) for n in order[1:] if n != fallback])
    fed.cluster.wait_converged(fed.cluster.nodes)
    watcher = Watcher(fed.ua.ip, 5098, (fed.kam.ip, fed.kam.port))
    frank = f"frank@{KAM_DOMAIN}"

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(fed.cluster.ip(fed.cluster.home_node(alice)))
            await a.online()
            await asyncio.to_thread(fed.ua.message, alice, frank, "before the kill", 200)
            await a.expect_messages(frank, 1, timeout=WAIT)

            fed.cluster.kill9(fed.routing)
            killed_at = time.monotonic()
            # Bounded: the fallback must take the role within 20 s.
            delivered = False
            while time.monotonic() - killed_at < 20 and not delivered:
                try:
                    await asyncio.to_thread(fed.ua.message, alice, frank, "after the kill", 200)
                    delivered = True
                except AssertionError:
                    await asyncio.sleep(0.5)
            took = time.monotonic() - killed_at
            assert delivered, "no node served SIP within 20 s of the routing node's death"
            await a.expect_messages(frank, 1, timeout=WAIT)
            print(f"fallback served SIP {took:.1f}s after the kill")

            # Presence through the new routing node: a new subscription works end to end.
            resp = await asyncio.to_thread(watcher.subscribe, frank, alice)
            assert resp.status == 202, resp
            await a.expect_presence(frank, "the subscription request via the fallback",
                                    ptype="subscribe")
        finally:
            await a.logout()
            watcher.close()

    run(body(), timeout=120)
    assert metric(fed.cluster, fallback, "herald_sip_messages_total", direction="inbound") >= 1


def test_watcher_from_an_unknown_domain_gets_403(sip_fed) -> None:
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    watcher = Watcher(fed.ua.ip, 5096, (fed.kam.ip, fed.kam.port))

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(fed.cluster.ip(fed.cluster.home_node(alice)))
            await a.online()
            resp = await asyncio.to_thread(watcher.subscribe, "eve@unknown.test", alice)
            assert resp.status == 403, resp
            requests = [p for p in await a.drain(a.presences, 1.0) if p["type"] == "subscribe"]
            assert not requests, requests
        finally:
            await a.logout()
            watcher.close()

    run(body(), timeout=60)
    assert metric(fed.cluster, fed.routing, "herald_sip_failures_total", direction="inbound",
                  reason="domain_not_federated") >= 1


def test_outbound_im_session_through_kamailio_reused_both_ways(sip_fed) -> None:
    """IM-2/IM-3: alice's messages to a SIP user open one INVITE session (m=message) through
    Kamailio and go inside it; the SIP user's reply inside that dialog reaches alice; BYE ends
    it and the next message opens a new one; a SIP user whose UA refuses sessions (488) still
    gets the message, in page mode."""
    fed: SipFed = sip_fed()
    alice, apw = user_away_from(fed, "alice", fed.routing)
    ua = Watcher(fed.ua.ip, 5095, (fed.kam.ip, fed.kam.port))
    erin, frank = f"erin@{KAM_DOMAIN}", f"frank@{KAM_DOMAIN}"
    fed.ua.register("erin", 5095)
    fed.ua.register("frank", 5095)

    def invites() -> list[SipMsg]:
        with ua.cond:
            return [g for g in ua.got if g.is_request and g.start.startswith("INVITE")]

    async def body() -> None:
        a = Client(alice, apw, ca=fed.ca.ca_path)
        try:
            await a.login(fed.cluster.ip(fed.cluster.home_node(alice)))
            await a.online()
            a.chat(erin, "first")
            a.chat(erin, "second")
            for text in ("first", "second"):
                await asyncio.to_thread(ua.notify, lambda m, t=text: m.start.startswith(
                    "MESSAGE") and m.body == t, f"MESSAGE {text!r}")
            assert len(invites()) == 1, invites()
            invite = invites()[0]
            assert "m=message" in invite.body, invite.body
            ack = await asyncio.to_thread(ua.notify, lambda m: m.start.startswith("ACK"), "ACK")
            assert ack.get("call-id") == invite.get("call-id"), ack
            msgs = [g for g in ua.got if g.is_request and g.start.startswith("MESSAGE")]
            assert {m.get("call-id") for m in msgs} == {invite.get("call-id")}, msgs
            assert all(";tag=" in (m.get("to") or "") for m in msgs), msgs

            # erin answers inside the dialog Herald opened: it reaches alice.
            ua.accept_session(invite, erin, alice.split("/")[0])
            r = await asyncio.to_thread(ua.in_dialog, "MESSAGE", "reply in your session")
            assert r.status == 200, r
            got = await a.expect_messages(erin, 1, timeout=WAIT)
            assert got[0]["body"] == "reply in your session", got

            # BYE from erin ends it: the next message opens a new session.
            r = await asyncio.to_thread(ua.in_dialog, "BYE")
            assert r.status == 200, r
            mark = ua.mark()
            a.chat(erin, "after bye")
            await asyncio.to_thread(ua.notify, lambda m: m.start.startswith("MESSAGE")
                                    and m.body == "after bye", "MESSAGE after BYE", mark)
            assert len(invites()) == 2, invites()

            # A UA that refuses sessions (488): the message still arrives, in page mode.
            ua.invite_code = 488
            mark = ua.mark()
            a.chat(frank, "page mode please")
            m = await asyncio.to_thread(ua.notify, lambda m: m.start.startswith("MESSAGE")
                                        and m.body == "page mode please", "page-mode MESSAGE",
                                        mark)
            assert ";tag=" not in (m.get("to") or ""), m  # outside any dialog
            errors = await a.drain(a.message_errors, 1.0)
            assert not errors, [str(e) for e in errors]
        finally:
            await a.logout()
            ua.close()

    run(body(), timeout=90)
    c = fed.cluster
    assert metric(c, fed.routing, "herald_sip_requests_total", direction="outbound",
                  method="INVITE", status="200") >= 2
    assert metric(c, fed.routing, "herald_sip_requests_total", direction="outbound",
                  method="INVITE", status="488") >= 1
    assert metric(c, fed.routing, "herald_sip_page_mode_fallbacks_total") >= 1
