"""Calendar-driven presence seen from other domains (issue 12: "every watcher — local, on
another node, or federated"), over XMPP and over SIP.

Herald (example.test, 3 nodes, federation over TLS with SASL EXTERNAL both ways) reads
alice's calendar from a real Radicale over TLS; bob@p.test on a real Prosody 0.12 watches her
through s2s. When the `caldav` client (PyPI) puts a meeting covering now into her calendar,
bob's client on Prosody gets "away / In a meeting" (without Herald's availability extension,
which never crosses to a generic peer: `federation/src/edge/xmpp_presence.rs`); when the
meeting is deleted, her own presence again. Her own presence
change during the meeting still shows the meeting.

Over SIP: dave@kam.test, a SIP user agent behind a real Kamailio federating with Herald over
mutual TLS, watches alice (homed away from the routing node); NOTIFYs carry her own note, then
"In a meeting" while the Radicale meeting lasts, then her own note again.

Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Cluster, wait_until  # noqa: E402
from s2s_fed import BODY_TIMEOUT, DELIVERY_TIMEOUT, befriend, federation  # noqa: E402,F401
from s2s_harness import TestCA  # noqa: E402
from sip_fed import KAM_DOMAIN, SipFed, sip_fed  # noqa: E402,F401
from test_sip_presence import Watcher, basic  # noqa: E402
from test_sip_tls import user_away_from  # noqa: E402
from test_calendar import (MEETING_STATUS, RADICALE, RIGHTS, SERVICE_ACCOUNT,  # noqa: E402
                           SERVICE_PASSWORD, Owner, Radicale, _utcnow)
from xmpp_client import Client, run  # noqa: E402


#: Poll interval of every node (seconds).
POLL = 1
#: Bound on a calendar change reaching the federated watcher: a poll, the user actor, the
#: cluster hop to a federating node, s2s.
CHANGE_TIMEOUT = 15.0


OWNER_NAME, OWNER_PW = "alice", "alice-cal-pw"


def _radicale(tmp_path: Path, ca: TestCA) -> Radicale:
    """A Radicale over TLS (certificate for localhost from `ca`) where the gateway's service
    account reads every calendar and OWNER_NAME owns hers."""
    assert RADICALE is not None, "Radicale is not installed: apt-get install radicale " \
        "(scripts/test does)"
    cert = ca.issue(["localhost"], directory=tmp_path / "radicale")
    users = tmp_path / "radicale" / "users"
    rights = tmp_path / "radicale" / "rights"
    users.write_text(f"{SERVICE_ACCOUNT}:{SERVICE_PASSWORD}\n{OWNER_NAME}:{OWNER_PW}\n")
    rights.write_text(RIGHTS)
    return Radicale(tmp_path, "fed", ca.ca_path, cert, users, rights,
                    tmp_path / "radicale" / "collections")


def _gateway(cluster: Cluster, rad: Radicale) -> None:
    cluster.cli(None, "calendar-gateway", "add", "cal-fed", "--kind", "caldav",
                "--host", "localhost", "--port", str(rad.port), "--path", "/")
    cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "caldav",
                "--account", SERVICE_ACCOUNT, "--password", SERVICE_PASSWORD)


@pytest.mark.s2s
def test_a_watcher_on_another_domain_sees_the_meeting(federation, tmp_path: Path) -> None:
    fed = federation("required", extra_args=("--calendar-poll-seconds", str(POLL)))
    ca = fed.env.ca
    owner_name = OWNER_NAME
    rad = _radicale(tmp_path, ca)
    try:
        rad.start()
        cluster = fed.cluster
        _gateway(cluster, rad)
        owner = Owner(rad, OWNER_NAME, OWNER_PW, ca.ca_path)

        async def body() -> None:
            try:
                alice, bob = await befriend(fed)
                cluster.cli(None, "user", "update", alice.user, "--calendar-enabled", "true",
                            "--calendar-mailbox", owner_name)
                await asyncio.to_thread(
                    wait_until,
                    lambda: cluster.user(alice.user).get("calendar_gateway") == "cal-fed", 15,
                    "alice assigned to gateway cal-fed")
                alice.send_presence(pstatus="at my desk")
                await bob.expect_presence(alice.user, "alice's own presence", show="",
                                          status="at my desk", timeout=DELIVERY_TIMEOUT)

                now = _utcnow()
                url = await asyncio.to_thread(
                    owner.add_event, now - datetime.timedelta(minutes=5),
                    now + datetime.timedelta(minutes=55), "Design review")
                p = await bob.expect_presence(alice.user, "alice in a meeting, over s2s",
                                              show="away", status=MEETING_STATUS,
                                              timeout=CHANGE_TIMEOUT)
                ext = p.xml.find("{urn:x-herald:availability:0}availability")
                assert ext is None, f"Herald's own extension crossed to p.test: {p}"

                # Her own change during the meeting: still the meeting for bob.
                alice.send_presence(pstatus="still at my desk")
                await bob.expect_presence(alice.user, "alice's new presence, still in a meeting",
                                          show="away", status=MEETING_STATUS,
                                          timeout=DELIVERY_TIMEOUT)

                # The meeting is cancelled: her own presence again.
                await asyncio.to_thread(owner.delete_event, url)
                await bob.expect_presence(alice.user, "alice's own presence after the meeting",
                                          show="", status="still at my desk",
                                          timeout=CHANGE_TIMEOUT)
            finally:
                await fed.close_clients()
        run(body(), BODY_TIMEOUT)
    except BaseException:
        print(f"\n{rad.log_tail()}", file=sys.stderr)
        raise
    finally:
        rad.stop()


def test_a_sip_watcher_sees_the_meeting(sip_fed, tmp_path: Path) -> None:
    fed: SipFed = sip_fed(extra_args=("--calendar-poll-seconds", str(POLL)))
    rad = _radicale(tmp_path, fed.ca)
    alice, apw = user_away_from(fed, "alice", fed.routing)
    watcher = Watcher(fed.ua.ip, 5096, (fed.kam.ip, fed.kam.port))
    dave = f"dave@{KAM_DOMAIN}"
    try:
        rad.start()
        _gateway(fed.cluster, rad)
        owner = Owner(rad, OWNER_NAME, OWNER_PW, fed.ca.ca_path)
        fed.cluster.cli(None, "user", "update", alice, "--calendar-enabled", "true",
                        "--calendar-mailbox", OWNER_NAME)
        wait_until(lambda: fed.cluster.user(alice).get("calendar_gateway") == "cal-fed", 15,
                   "alice assigned to gateway cal-fed")

        async def body() -> None:
            a = Client(alice, apw, ca=fed.ca.ca_path)
            try:
                login = next(n for n in fed.cluster.nodes if n != fed.routing)
                await a.login(fed.cluster.ip(login))
                await a.online(status="at my desk")
                resp = await asyncio.to_thread(watcher.subscribe, dave, alice)
                assert resp.status == 202, resp
                await a.expect_presence(dave, "the SIP watcher's subscription request",
                                        ptype="subscribe")
                mark = watcher.mark()
                a.send_presence(pto=dave, ptype="subscribed")
                n = await asyncio.to_thread(
                    watcher.notify, lambda m: m.state.startswith("active")
                    and basic(m) == "open" and "at my desk" in m.body,
                    "an active NOTIFY with alice's own note", mark)

                mark = watcher.mark()
                now = _utcnow()
                url = await asyncio.to_thread(
                    owner.add_event, now - datetime.timedelta(minutes=5),
                    now + datetime.timedelta(minutes=55), "Design review")
                n = await asyncio.to_thread(
                    watcher.notify, lambda m: MEETING_STATUS in m.body,
                    "a NOTIFY saying alice is in a meeting", mark)
                assert basic(n) == "open", n.body

                mark = watcher.mark()
                await asyncio.to_thread(owner.delete_event, url)
                n = await asyncio.to_thread(
                    watcher.notify, lambda m: "at my desk" in m.body
                    and MEETING_STATUS not in m.body,
                    "a NOTIFY with alice's own note after the meeting", mark)
                assert basic(n) == "open", n.body
            finally:
                await a.logout()
        run(body(), BODY_TIMEOUT)
    except BaseException:
        print(f"\n{rad.log_tail()}", file=sys.stderr)
        raise
    finally:
        watcher.close()
        rad.stop()
