"""Calendar-driven presence seen from another XMPP domain (issue 12: "every watcher — local,
on another node, or federated").

Herald (example.test, 3 nodes, federation over TLS with SASL EXTERNAL both ways) reads
alice's calendar from a real Radicale over TLS; bob@p.test on a real Prosody 0.12 watches her
through s2s. When the `caldav` client (PyPI) puts a meeting covering now into her calendar,
bob's client on Prosody gets "away / In a meeting" (without Herald's availability extension,
which never crosses to a generic peer: `federation/src/edge/xmpp_presence.rs`); when the
meeting is deleted, her own presence again. Her own presence
change during the meeting still shows the meeting. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import wait_until  # noqa: E402
from s2s_fed import BODY_TIMEOUT, DELIVERY_TIMEOUT, befriend, federation  # noqa: E402,F401
from test_calendar import (MEETING_STATUS, RADICALE, RIGHTS, SERVICE_ACCOUNT,  # noqa: E402
                           SERVICE_PASSWORD, Owner, Radicale, _utcnow)
from xmpp_client import run  # noqa: E402

pytestmark = [pytest.mark.s2s]

#: Poll interval of every node (seconds).
POLL = 1
#: Bound on a calendar change reaching the federated watcher: a poll, the user actor, the
#: cluster hop to a federating node, s2s.
CHANGE_TIMEOUT = 15.0


def test_a_watcher_on_another_domain_sees_the_meeting(federation, tmp_path: Path) -> None:
    assert RADICALE is not None, "Radicale is not installed: apt-get install radicale " \
        "(scripts/test does)"
    fed = federation("required", extra_args=("--calendar-poll-seconds", str(POLL)))
    ca = fed.env.ca
    cert = ca.issue(["localhost"], directory=tmp_path / "radicale")
    users = tmp_path / "radicale" / "users"
    rights = tmp_path / "radicale" / "rights"
    owner_name, owner_pw = "alice", "alice-cal-pw"
    users.write_text(f"{SERVICE_ACCOUNT}:{SERVICE_PASSWORD}\n{owner_name}:{owner_pw}\n")
    rights.write_text(RIGHTS)
    rad = Radicale(tmp_path, "fed", ca.ca_path, cert, users, rights,
                   tmp_path / "radicale" / "collections")
    try:
        rad.start()
        cluster = fed.cluster
        cluster.cli(None, "calendar-gateway", "add", "cal-fed", "--kind", "caldav",
                    "--host", "localhost", "--port", str(rad.port), "--path", "/")
        cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "caldav",
                    "--account", SERVICE_ACCOUNT, "--password", SERVICE_PASSWORD)
        owner = Owner(rad, owner_name, owner_pw, ca.ca_path)

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
