"""Calendar-driven presence through Exchange Web Services (issue 12, REQUIREMENTS §17 CAL-4,
CAL-6..CAL-8, CAL-13, CAL-14, MAP-9), against the in-repo EWS responder (ews_responder.py):

- the responder itself is checked by exchangelib (PyPI; a client we did not write): with NTLM
  credentials it calls GetServerTimeZones + GetUserAvailability and reads back what the
  responder serves; as an impersonating account it makes a pull subscription on a mailbox's
  calendar (Subscribe) and reads a CreatedEvent, then a StatusEvent (GetEvents); a wrong
  password is refused; pyspnego (exchangelib's NTLM) forced to NTLMv1 is refused, forced
  NTLMv2 accepted;
- Herald with a real 2-node cluster: `calendar-gateway add --kind ews`, shared credentials,
  NTLMv2 and the impersonation header asserted on the responder side, a pull subscription
  whose events trigger the availability reads, a meeting now → the
  watcher on the other node sees "away / In a meeting"; out of office → away; the meeting
  removed → the user's own presence; three gateways round-robin, one stopped → its users move
  to the others; a wrong password → status "not authenticated" and a metric;
- bad gateways, EWS and CalDAV (garbage XML, a huge answer, a slow answer, a wrong
  certificate, wrong credentials; for EWS also a forms-based login redirect): each is a status with the reason and a metric, never a
  crash, never chosen for new users, while another user's calendar presence keeps working.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.client
import os
import re
import ssl
import sys
import time
from pathlib import Path

import pytest
import requests
import spnego
from exchangelib import (IMPERSONATION, NTLM, Account, Build, Configuration, Credentials,
                         EWSDateTime, EWSTimeZone, Version)
from exchangelib.errors import UnauthorizedError
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import BaseProtocol, Protocol
from exchangelib.services import GetEvents, SubscribeToPull

from ews_responder import EWS_PATH, Calendars, EwsResponder, Event, md4, ntowf_v2
from harness import Cluster, HarnessError, wait_until
from s2s_harness import TestCA
from xmpp_client import Clients, pick_nodes, run

POLL = 1
#: Herald's per-request deadline in these tests (the slow gateway answers after 4 s).
TIMEOUT = 2
CHANGE_TIMEOUT = 10.0
ACCOUNT, PASSWORD = "svc@calendar.test", "svc-Secret-1"
MAIL_DOMAIN = "calendar.test"
MEETING_STATUS = "In a meeting"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _meeting(minutes_left: int = 30, busy: str = "Busy") -> Event:
    now = _now()
    return Event(now - datetime.timedelta(minutes=5), now + datetime.timedelta(minutes=minutes_left),
                 busy, "Quarterly review")


def _gateway(cluster: Cluster, gid: str) -> dict:
    st = cluster.cli_json(None, "calendar-gateway", "status")
    for g in st.get("gateways") or []:
        if g.get("id") == gid:
            return g
    raise HarnessError(f"gateway {gid} missing from `calendar-gateway status`: {st}")


def _metric(cluster: Cluster, node: int, name: str, **labels: str) -> float:
    """The value of one sample of `name` with (at least) `labels` on `node`, 0 if absent."""
    _, text = cluster.http_get(node, "/metrics")
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _add_gateway(cluster: Cluster, gid: str, r: EwsResponder, *extra: str) -> None:
    cluster.cli(None, "calendar-gateway", "add", gid, "--kind", "ews", "--host", "localhost",
                "--port", str(r.port), "--path", EWS_PATH, *extra)


# -------------------------------------------------------------------------------------------
# The responder, checked by clients we did not write.


def test_responder_crypto_matches_published_vectors() -> None:
    # RFC 1320 appendix A.5; MS-NLMP §4.2.4.1.1 NTOWFv2.
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"
    assert ntowf_v2("Password", "User", "Domain").hex() == "0c868a403bfd7a93a3001ef22ef02e3f"


class _TrustTestCA(requests.adapters.HTTPAdapter):
    """exchangelib's documented hook for a private CA (BaseProtocol.HTTP_ADAPTER_CLS)."""
    ca: str = ""

    def cert_verify(self, conn, url, verify, cert):  # type: ignore[override]
        super().cert_verify(conn=conn, url=url, verify=self.ca, cert=cert)


def _config(r: EwsResponder, password: str) -> Configuration:
    return Configuration(service_endpoint=r.url(), credentials=Credentials(ACCOUNT, password),
                         auth_type=NTLM, version=Version(build=Build(14, 2)))


def _exchangelib(r: EwsResponder, password: str) -> Protocol:
    return Protocol(config=_config(r, password))


def _raw_ntlm(r: EwsResponder, ca: Path, lm_compat_level: str) -> int:
    """One POST authenticated by pyspnego's NTLM at `LM_COMPAT_LEVEL` (2: NTLMv1 only, 3:
    NTLMv2) over one keep-alive connection; the final status."""
    old = os.environ.get("LM_COMPAT_LEVEL")
    os.environ["LM_COMPAT_LEVEL"] = lm_compat_level
    try:
        ctx = spnego.client(ACCOUNT, PASSWORD, hostname="localhost", protocol="ntlm")
        conn = http.client.HTTPSConnection(
            "localhost", r.port, timeout=5,
            context=ssl.create_default_context(cafile=str(ca)))
        body = b"<x/>"
        conn.request("POST", EWS_PATH, body, {
            "Authorization": "NTLM " + base64.b64encode(ctx.step()).decode()})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401, resp.status
        challenge = base64.b64decode(resp.getheader("WWW-Authenticate").split(" ", 1)[1])
        conn.request("POST", EWS_PATH, body, {
            "Authorization": "NTLM " + base64.b64encode(ctx.step(challenge)).decode()})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status
    finally:
        if old is None:
            os.environ.pop("LM_COMPAT_LEVEL", None)
        else:
            os.environ["LM_COMPAT_LEVEL"] = old


def test_exchangelib_reads_the_responder(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["localhost"], directory=tmp_path / "ews")
    cals = Calendars()
    # exchangelib's GetUserAvailability is a protocol-level call without impersonation: the
    # service account reads free/busy with its own rights here.
    r = EwsResponder("cas-x", cert, cals, {ACCOUNT: PASSWORD}, require_impersonation=False)
    r.start()
    old_adapter = BaseProtocol.HTTP_ADAPTER_CLS
    _TrustTestCA.ca = str(ca.ca_path)
    BaseProtocol.HTTP_ADAPTER_CLS = _TrustTestCA
    try:
        meeting = cals.add(f"alice@{MAIL_DOMAIN}", _meeting(30, "Busy"))
        later = _now() + datetime.timedelta(hours=1)
        cals.add(f"alice@{MAIL_DOMAIN}", Event(later, later + datetime.timedelta(hours=1), "OOF",
                                               "Dentist"))
        tz = EWSTimeZone("UTC")
        start = EWSDateTime.from_datetime(_now() - datetime.timedelta(hours=1)).astimezone(tz)
        end = EWSDateTime.from_datetime(_now() + datetime.timedelta(hours=3)).astimezone(tz)
        views = list(_exchangelib(r, PASSWORD).get_free_busy_info(
            accounts=[(f"alice@{MAIL_DOMAIN}", "Required", False)], start=start, end=end,
            merged_free_busy_interval=15))
        assert len(views) == 1, views
        v = views[0]
        assert v.view_type == "DetailedMerged", v
        got = [(e.busy_type, e.start, e.end, e.details.subject) for e in v.calendar_events]
        assert got[0] == ("Busy", meeting.start, meeting.end, "Quarterly review"), got
        assert got[1][0] == "OOF" and got[1][3] == "Dentist", got
        assert set(v.merged) <= set("0123") and "2" in v.merged and "3" in v.merged, v.merged
        assert r.stats["ntlm_ok"] >= 1 and r.stats["ntlmv1_refused"] == 0, r.stats
        assert r.stats["operations"] == ["GetServerTimeZones", "GetUserAvailability"], r.stats

        # Pull notifications, impersonating alice: Subscribe, then GetEvents sees a new item,
        # then only a StatusEvent.
        r.require_impersonation = True
        acc = Account(f"alice@{MAIL_DOMAIN}", config=_config(r, PASSWORD), autodiscover=False,
                      access_type=IMPERSONATION)
        folder = DistinguishedFolderId(id="calendar",
                                       mailbox=Mailbox(email_address=f"alice@{MAIL_DOMAIN}"))
        [(sid, mark)] = list(SubscribeToPull(account=acc).call(
            folders=[folder], event_types=["CreatedEvent", "DeletedEvent"], watermark=None,
            timeout=10))
        cals.add(f"alice@{MAIL_DOMAIN}", _meeting(10))
        [n] = list(GetEvents(account=acc).call(subscription_id=sid, watermark=mark))
        assert [type(e).__name__ for e in n.events] == ["CreatedEvent"], n
        assert n.events[0].parent_folder_id.id == "calendar", n
        [n2] = list(GetEvents(account=acc).call(subscription_id=sid,
                                                 watermark=n.events[-1].watermark))
        assert [type(e).__name__ for e in n2.events] == ["StatusEvent"], n2
        assert r.stats["impersonated"] and r.stats["impersonation_violations"] == [], r.stats
        r.require_impersonation = False

        # A wrong password: the NTLMv2 proof does not verify, exchangelib gets 401.
        with pytest.raises(UnauthorizedError):
            list(_exchangelib(r, "not-the-password").get_free_busy_info(
                accounts=[(f"alice@{MAIL_DOMAIN}", "Required", False)], start=start, end=end))
        assert any("wrong password" in x for x in r.stats["ntlm_refused"]), r.stats

        # pyspnego (exchangelib's NTLM) forced to NTLMv1 is refused; NTLMv2 passes.
        assert _raw_ntlm(r, ca.ca_path, "2") == 401
        assert r.stats["ntlmv1_refused"] == 1, r.stats
        assert _raw_ntlm(r, ca.ca_path, "3") == 500  # authenticated; <x/> is no SOAP request
    finally:
        BaseProtocol.HTTP_ADAPTER_CLS = old_adapter
        r.stop()


# -------------------------------------------------------------------------------------------
# Herald.


def _cluster(tmp_path: Path, ca: TestCA) -> Cluster:
    return Cluster(tmp_path / "cluster",
                   extra_args=["--tls-ca", str(ca.ca_path), "--calendar-poll-seconds", str(POLL),
                               "--calendar-timeout-seconds", str(TIMEOUT)])


def test_ews_meeting_presence_pool_and_failover(tmp_path: Path) -> None:
    t0 = time.monotonic()
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["localhost"], directory=tmp_path / "ews")
    cals = Calendars()
    cas = [EwsResponder(f"cas{i}", cert, cals, {ACCOUNT: PASSWORD}) for i in (1, 2, 3)]
    cluster = _cluster(tmp_path, ca)
    try:
        for r in cas:
            r.start()
        cluster.start_cluster(2)
        _pool_scenario(cluster, cals, cas)
    except BaseException:
        print(f"\n{cluster.all_log_tails(60)}\n" + "\n".join(
            f"--- {r.name}: {r.stats}" for r in cas), file=sys.stderr)
        raise
    finally:
        cluster.stop()
        for r in cas:
            r.stop()
    elapsed = time.monotonic() - t0
    assert elapsed < 60, f"the EWS pool test took {elapsed:.0f}s"


def _pool_scenario(cluster: Cluster, cals: Calendars, cas: list[EwsResponder]) -> None:
    r1, r2, r3 = cas
    cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "ews",
                "--account", ACCOUNT, "--password", PASSWORD)
    _add_gateway(cluster, "ews-1", r1)
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    mailbox = f"alice@{MAIL_DOMAIN}"
    cluster.cli(None, "user", "update", alice, "--calendar-enabled", "true",
                "--calendar-mailbox", mailbox)
    wait_until(lambda: cluster.user(alice).get("calendar_gateway") == "ews-1", 15,
               "alice assigned to gateway ews-1")
    g = wait_until(lambda: (lambda s: s if s.get("last_check_at") else None)(
        _gateway(cluster, "ews-1")), 15, "a first check of gateway ews-1")
    assert g["kind"] == "ews" and g["supported"], g
    assert g["reachable"] and g["certificate_ok"] and g["authenticated"], g
    assert g["last_error"] == "", g
    na, nb = pick_nodes(cluster, alice, bob, nodes=(1, 2))

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, na)
            b = await xc.login(bob, bpw, nb)
            await a.online(status="at my desk")
            await b.online()
            b.send_presence(pto=alice, ptype="subscribe")
            await a.expect_presence(bob, "bob's subscription request", ptype="subscribe")
            a.send_presence(pto=bob, ptype="subscribed")
            await b.expect_presence(alice, "alice's own presence", ptype="available", show="",
                                    status="at my desk")
            # A meeting now: bob (on the other node) sees it within the poll interval.
            meeting = cals.add(mailbox, _meeting(30, "Busy"))
            p = await b.expect_presence(alice, "alice in a meeting", show="away",
                                        status=MEETING_STATUS, timeout=CHANGE_TIMEOUT)
            ext = p.xml.find("{urn:x-herald:availability:0}availability")
            assert ext is not None and ext.get("state") == "busy", f"extension: {p}"
            # The meeting ends (removed): her own presence returns.
            cals.remove(mailbox, meeting)
            await b.expect_presence(alice, "alice's own presence after the meeting", show="",
                                    status="at my desk", timeout=CHANGE_TIMEOUT)
            # Out of office → away.
            oof = cals.add(mailbox, _meeting(30, "OOF"))
            await b.expect_presence(alice, "alice out of office", show="away",
                                    timeout=CHANGE_TIMEOUT)
            cals.remove(mailbox, oof)
            await b.expect_presence(alice, "alice back from out of office", show="",
                                    status="at my desk", timeout=CHANGE_TIMEOUT)
    run(body(), timeout=40)

    # The responder saw NTLMv2 (verified against the password) and the impersonation header
    # naming alice's mailbox on every poll of it.
    assert r1.stats["ntlm_ok"] >= 1 and r1.stats["ntlmv1_refused"] == 0, r1.stats
    assert r1.stats["ntlm_refused"] == [], r1.stats
    assert mailbox in r1.stats["impersonated"], r1.stats
    assert r1.stats["impersonation_violations"] == [], r1.stats
    assert "HERALD" in r1.stats["workstations"], r1.stats
    # Pull notifications: one subscription for alice, polled with GetEvents; the calendar
    # changes (2 created, 2 deleted) came as events.
    assert r1.stats["subscribed"].count(mailbox) >= 1, r1.stats
    assert r1.stats["get_events"] >= 4 and r1.stats["events_sent"] >= 4, r1.stats
    # ... and only a change (or a new subscription) costs a GetUserAvailability of her mailbox.
    reads = r1.stats["availability_for"].count(mailbox)
    assert reads <= r1.stats["events_sent"] + 2 * len(r1.stats["subscribed"]), r1.stats
    # Nothing changes for a while: GetEvents goes on, no more availability reads.
    polls_before = r1.stats["get_events"]
    wait_until(lambda: r1.stats["get_events"] >= polls_before + 3, 10,
               "three more GetEvents on an unchanged calendar")
    assert r1.stats["availability_for"].count(mailbox) == reads, r1.stats
    # Polls reuse their NTLM-authenticated connection: handshakes come from the gateway
    # checks (a new connection each, on both nodes), hardly from alice's polls.
    checks = r1.stats["availability_for"].count(ACCOUNT)
    polls = r1.stats["get_events"] + reads
    assert r1.stats["ntlm_ok"] <= checks + 3 and polls > 3, (checks, polls, r1.stats)
    home = cluster.home_node(alice)
    assert _metric(cluster, home, "herald_calendar_notifications_total", result="changed") >= 2

    # Three gateways: new users are spread round-robin over them.
    _add_gateway(cluster, "ews-2", r2)
    _add_gateway(cluster, "ews-3", r3)
    users = [cluster.new_user(f"u{i}")[0] for i in range(5)]
    for u in users:
        cluster.cli(None, "user", "update", u, "--calendar-enabled", "true")

    def assignments() -> dict[str, str] | None:
        got = {u: cluster.user(u).get("calendar_gateway") or "" for u in users + [alice]}
        return got if all(got.values()) else None
    got = wait_until(assignments, 20, "every calendar user assigned a gateway")
    per = {g: sum(1 for v in got.values() if v == g) for g in ("ews-1", "ews-2", "ews-3")}
    assert all(n >= 1 for n in per.values()) and max(per.values()) - min(per.values()) <= 1, \
        f"not spread round-robin: {got}"

    # ews-2 stops: its status says so, its users move to ews-1 and ews-3.
    moved = [u for u, g in got.items() if g == "ews-2"]
    r2.stop()
    wait_until(lambda: (lambda s: s if not s["reachable"] and "cannot connect" in s["last_error"]
                        else None)(_gateway(cluster, "ews-2")), 15,
               "`calendar-gateway status`: ews-2 unreachable")
    for u in moved:
        wait_until(lambda: cluster.user(u).get("calendar_gateway") in ("ews-1", "ews-3"), 15,
                   f"{u} moved off ews-2")

    # ews-3's server no longer accepts the shared password: not authenticated, a metric.
    r3.accounts = {ACCOUNT: "changed-on-the-server"}
    st = wait_until(lambda: (lambda s: s if not s["authenticated"] else None)(
        _gateway(cluster, "ews-3")), 15, "ews-3 not authenticated")
    assert st["reachable"] and st["certificate_ok"], st
    assert "refused" in st["last_error"], st
    wait_until(lambda: _metric(cluster, 1, "herald_calendar_gateway_checks_total",
                               gateway="ews-3", result="auth") >= 1, 10,
               "herald_calendar_gateway_checks_total{gateway=ews-3,result=auth}")
    assert _metric(cluster, 1, "herald_calendar_gateway_up", gateway="ews-3") == 0
    assert _metric(cluster, 1, "herald_calendar_gateway_up", gateway="ews-1") == 1
    assert any("wrong password" in x for x in r3.stats["ntlm_refused"]), r3.stats
    for u in users + [alice]:
        wait_until(lambda: cluster.user(u).get("calendar_gateway") == "ews-1", 15,
                   f"{u} on the only healthy gateway ews-1")

    # Basic authentication and no impersonation (the account then reads free/busy with its
    # own rights): `set-credentials --auth basic --no-impersonation`.
    r1.allow_basic = True
    r1.require_impersonation = False
    cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "ews", "--account",
                ACCOUNT, "--password", PASSWORD, "--auth", "basic", "--no-impersonation")
    wait_until(lambda: r1.stats["basic_ok"] >= 1, 10, "Herald authenticating with Basic")
    cals.add(mailbox, _meeting(5))
    wait_until(lambda: mailbox in r1.stats["not_impersonated"], 10,
               "alice's calendar read without the impersonation header")
    assert _gateway(cluster, "ews-1")["authenticated"]


def test_bad_gateways_are_statuses_not_crashes(tmp_path: Path) -> None:
    t0 = time.monotonic()
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["localhost"], directory=tmp_path / "ews")
    bad_cert = ca.issue_untrusted(["localhost"], directory=tmp_path / "ews-bad")
    cals = Calendars()
    good = EwsResponder("good", cert, cals, {ACCOUNT: PASSWORD})
    # No pull notifications on this one: Herald polls GetUserAvailability.
    good.offer_pull = False
    bad = {
        "ews-garbage": EwsResponder("garbage", cert, cals, {ACCOUNT: PASSWORD}),
        "ews-huge": EwsResponder("huge", cert, cals, {ACCOUNT: PASSWORD}),
        "ews-slow": EwsResponder("slow", cert, cals, {ACCOUNT: PASSWORD}),
        "ews-cert": EwsResponder("cert", bad_cert, cals, {ACCOUNT: PASSWORD}),
        "ews-creds": EwsResponder("creds", cert, cals, {ACCOUNT: "another-password"}),
        "ews-forms": EwsResponder("forms", cert, cals, {ACCOUNT: PASSWORD}),
    }
    bad["ews-forms"].mode = "forms"
    # The same failures from CalDAV gateways (Basic authentication, PROPFIND answered 207).
    for kind in ("garbage", "huge", "slow", "cert", "creds"):
        bad[f"dav-{kind}"] = EwsResponder(
            f"dav-{kind}", bad_cert if kind == "cert" else cert, cals,
            {ACCOUNT: "another-password" if kind == "creds" else PASSWORD}, allow_basic=True)
    for prefix in ("ews", "dav"):
        bad[f"{prefix}-garbage"].mode = "garbage"
        bad[f"{prefix}-huge"].mode = "huge"
        bad[f"{prefix}-slow"].mode = "slow"
        bad[f"{prefix}-slow"].slow_seconds = TIMEOUT + 2
    everyone = [good, *bad.values()]
    cluster = _cluster(tmp_path, ca)
    try:
        for r in everyone:
            r.start()
        cluster.start_cluster(1)
        _bad_scenario(cluster, cals, good, bad)
    except BaseException:
        print(f"\n{cluster.all_log_tails(80)}", file=sys.stderr)
        raise
    finally:
        cluster.stop()
        for r in everyone:
            r.stop()
    elapsed = time.monotonic() - t0
    assert elapsed < 50, f"the bad-gateway test took {elapsed:.0f}s"


def _bad_scenario(cluster: Cluster, cals: Calendars, good: EwsResponder,
                  bad: dict[str, EwsResponder]) -> None:
    cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "ews",
                "--account", ACCOUNT, "--password", PASSWORD)
    _add_gateway(cluster, "ews-good", good)
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    mailbox = f"alice@{MAIL_DOMAIN}"
    cluster.cli(None, "user", "update", alice, "--calendar-enabled", "true",
                "--calendar-mailbox", mailbox)
    wait_until(lambda: cluster.user(alice).get("calendar_gateway") == "ews-good", 15,
               "alice assigned to ews-good")
    cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "caldav",
                "--account", ACCOUNT, "--password", PASSWORD)
    for gid, r in bad.items():
        if gid.startswith("dav-"):
            cluster.cli(None, "calendar-gateway", "add", gid, "--kind", "caldav", "--host",
                        "localhost", "--port", str(r.port), "--path", EWS_PATH)
        else:
            _add_gateway(cluster, gid, r)

    # (expected words in last_error, reachable, certificate_ok, authenticated, metric result)
    want = {
        "ews-garbage": ("malformed XML", True, True, True, "bad_xml"),
        "ews-huge": ("larger than", True, True, True, "too_large"),
        "ews-slow": ("no answer within", False, False, False, "timeout"),
        "ews-cert": ("untrusted CA", True, False, False, "certificate"),
        "ews-creds": ("refused (HTTP 401)", True, True, False, "auth"),
    }
    want.update({gid.replace("ews-", "dav-"): w for gid, w in want.items()})
    # OWA forms-based login (CAL-14): reported as such.
    want["ews-forms"] = ("forms-based authentication is not supported", True, True, False, "auth")
    for gid, (words, reach, cert_ok, auth, result) in want.items():
        st = wait_until(lambda: (lambda s: s if words in s["last_error"] else None)(
            _gateway(cluster, gid)), 3 * TIMEOUT + 10, f"{gid}: last_error with {words!r}")
        assert (st["reachable"], st["certificate_ok"], st["authenticated"]) == \
            (reach, cert_ok, auth), st
        assert st["last_error_at"] > 0, st
        wait_until(lambda: _metric(cluster, 1, "herald_calendar_gateway_checks_total",
                                   gateway=gid, result=result) >= 1, 10,
                   f"herald_calendar_gateway_checks_total{{gateway={gid},result={result}}}")
        assert _metric(cluster, 1, "herald_calendar_gateway_up", gateway=gid) == 0
    assert _gateway(cluster, "ews-good")["last_error"] == ""

    # A new calendar user goes to the one working gateway; alice's calendar keeps working.
    carol, _ = cluster.new_user("carol")
    # carol's mailbox may not be impersonated (CAL-13): her error, not the gateway's.
    good.deny_impersonation.add(carol.lower())
    cluster.cli(None, "user", "update", carol, "--calendar-enabled", "true")
    wait_until(lambda: cluster.user(carol).get("calendar_gateway") == "ews-good", 15,
               "carol assigned to the only working gateway")
    wait_until(lambda: _metric(cluster, 1, "herald_calendar_polls_total",
                               result="soap_fault") >= 1, 10,
               "carol's poll refused with ErrorImpersonateUserDenied")

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, 1)
            b = await xc.login(bob, bpw, 1)
            await a.online(status="at my desk")
            await b.online()
            b.send_presence(pto=alice, ptype="subscribe")
            await a.expect_presence(bob, "bob's subscription request", ptype="subscribe")
            a.send_presence(pto=bob, ptype="subscribed")
            await b.expect_presence(alice, "alice's own presence", show="", status="at my desk")
            meeting = cals.add(mailbox, _meeting(30, "Busy"))
            await b.expect_presence(alice, "alice in a meeting", show="away",
                                    status=MEETING_STATUS, timeout=CHANGE_TIMEOUT)
            cals.remove(mailbox, meeting)
            await b.expect_presence(alice, "alice's own presence again", show="",
                                    status="at my desk", timeout=CHANGE_TIMEOUT)
    run(body(), timeout=30)
    assert good.stats["subscribed"] == [] and good.stats["get_events"] == 0, good.stats
    st = _gateway(cluster, "ews-good")
    assert st["authenticated"] and st["last_error"] == "", st
    assert cluster.user(carol).get("calendar_gateway") == "ews-good"
    assert _metric(cluster, 1, "herald_calendar_notifications_total", result="refused") >= 1
    assert good.stats["operations"].count("GetUserAvailability") >= 4, good.stats
    assert cluster.is_running(1), "the node died"
    code, _ = cluster.http_get(1, "/healthz")
    assert code == 200
