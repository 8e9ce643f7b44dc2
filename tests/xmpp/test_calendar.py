"""Calendar-driven presence (issue 12, REQUIREMENTS §17 CAL, MAP-9) against a real CalDAV
server: Radicale (Debian package `radicale`) over TLS with a certificate from a test CA that
Herald trusts through `--tls-ca`, events written by the `caldav` client from PyPI as the
calendar's owner, read by Herald with the gateway's service account.

One test walks the whole path with real processes:
- `calendar-gateway add --kind webdav` is refused with the reason; `--kind caldav` is stored,
  credentials set with `set-credentials --kind caldav`; a gateway whose server presents a
  certificate from an untrusted CA shows "reachable, certificate not ok" with the reason;
- alice's calendar is enabled (`user update --calendar-enabled true --calendar-mailbox`) and
  the pool assigns her the only gateway (`user show`: `calendar_gateway`);
- bob, on another node and subscribed to alice, sees her own presence, then "away / In a
  meeting" (and Herald's availability extension: busy, in-a-meeting) once an event covering
  now is in her Radicale calendar; carol, whom alice blocked, sees nothing;
- the gateway's Radicale is stopped: `calendar-gateway status` says it is unreachable with the
  connect error, alice is reassigned to the second gateway (another Radicale on the same
  collections), and deleting the event through that one gives bob alice's own presence back;
- a short event that ends by itself: busy at its start, her own presence at its end.

Everything is bounded: Radicale start, every presence expected, every CLI call.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Optional

# Not skipped when missing: scripts/test installs both (apt `radicale`, pip `caldav` from
# tests/xmpp/requirements.txt), and a calendar test that quietly skips proves nothing.
import caldav

from harness import Cluster, HarnessError, wait_until
from s2s_harness import TestCA
from test_sip import metric
from xmpp_client import Clients, pick_nodes, run

RADICALE = shutil.which("radicale")

#: Poll interval given to every node (seconds): the overlay must follow within a few of these.
POLL = 1
#: Bound on a calendar change reaching a watcher: the poll interval, the user actor, routing.
CHANGE_TIMEOUT = 10.0
RADICALE_START_TIMEOUT = 15.0
SERVICE_ACCOUNT, SERVICE_PASSWORD = "herald-svc@calendar.test", "svc-secret"
MEETING_STATUS = "In a meeting"

# Radicale `from_file` rights, first match wins: the service account reads every collection
# (R: principal and plain collections, r: calendars), each user owns their own home.
RIGHTS = f"""
[service]
user: {re.escape(SERVICE_ACCOUNT)}
collection: .*
permissions: Rr

[root]
user: .+
collection:
permissions: R

[principal]
user: .+
collection: {{user}}
permissions: RW

[calendars]
user: .+
collection: {{user}}/[^/]+
permissions: rw
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Radicale:
    """One Radicale 3 process on 127.0.0.1:PORT with TLS (`localhost` certificate), htpasswd
    (plain) users and `from_file` rights; several share one collection folder."""

    def __init__(self, directory: Path, name: str, ca: Path, cert: tuple[Path, Path],
                 users: Path, rights: Path, collections: Path) -> None:
        self.name = name
        self.ca = ca
        self.port = _free_port()
        self.log = directory / f"radicale-{name}.log"
        self.cmd = [
            str(RADICALE), "--config", "",
            "--server-hosts", f"127.0.0.1:{self.port}",
            "--server-ssl", "--server-certificate", str(cert[0]), "--server-key", str(cert[1]),
            "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(users),
            "--auth-htpasswd-encryption", "plain", "--auth-delay", "0",
            "--rights-type", "from_file", "--rights-file", str(rights),
            "--storage-filesystem-folder", str(collections),
            "--logging-level", "info",
        ]
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"radicale {self.name} exited ({self.proc.returncode})")
            # A full TLS handshake, so that the log shows no half-open probes.
            tls = ssl.create_default_context(cafile=str(self.ca))
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as raw:
                with tls.wrap_socket(raw, server_hostname="localhost"):
                    return True
        try:
            wait_until(up, RADICALE_START_TIMEOUT, f"radicale {self.name} on port {self.port}")
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.log_tail()}") from None

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 5 s; always reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def url(self) -> str:
        return f"https://localhost:{self.port}/"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"--- radicale {self.name}: no log ({exc}) ---"
        return f"--- radicale {self.name} log tail ---\n" + "\n".join(text.splitlines()[-lines:])


class Owner:
    """A calendar owner's `caldav` client (blocking; call through `asyncio.to_thread`)."""

    def __init__(self, radicale: Radicale, user: str, password: str, ca: Path) -> None:
        self.client = caldav.DAVClient(radicale.url(), username=user, password=password,
                                       ssl_verify_cert=str(ca), timeout=10)
        self.user = user

    def calendar(self) -> "caldav.Calendar":
        """The owner's `work` calendar (made on first use)."""
        principal = self.client.principal()
        for cal in principal.calendars():
            if str(cal.url).rstrip("/").endswith(f"/{self.user}/work"):
                return cal
        return principal.make_calendar(name="Work", cal_id="work")

    def add_event(self, start: datetime.datetime, end: datetime.datetime,
                  summary: str) -> str:
        ev = self.calendar().save_event(dtstart=start, dtend=end, summary=summary)
        return str(ev.url)

    def delete_event(self, url: str) -> None:
        """Deletes the event at `url` (only its path counts: it may come from another server
        on the same collections)."""
        self.calendar().event_by_url(urllib.parse.urlsplit(url).path).delete()


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _gateway(cluster: Cluster, gid: str) -> dict:
    st = cluster.cli_json(None, "calendar-gateway", "status")
    for g in st.get("gateways") or []:
        if g.get("id") == gid:
            return g
    raise HarnessError(f"gateway {gid} missing from `calendar-gateway status`: {st}")


def test_caldav_meeting_presence_with_radicale(tmp_path: Path) -> None:
    assert RADICALE is not None, "Radicale is not installed: apt-get install radicale " \
        "(scripts/test does)"
    t_start = time.monotonic()
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["localhost"], directory=tmp_path / "radicale")
    users = tmp_path / "radicale" / "users"
    rights = tmp_path / "radicale" / "rights"
    collections = tmp_path / "radicale" / "collections"
    # The mailbox names the calendar home (/alice/); the owner's password is Radicale's own.
    owner_name, owner_pw = "alice", "alice-cal-pw"
    users.write_text(f"{SERVICE_ACCOUNT}:{SERVICE_PASSWORD}\n{owner_name}:{owner_pw}\n")
    rights.write_text(RIGHTS)
    rad_a = Radicale(tmp_path, "a", ca.ca_path, cert, users, rights, collections)
    rad_b = Radicale(tmp_path, "b", ca.ca_path, cert, users, rights, collections)
    # A third server whose certificate Herald must refuse (issued by a CA it does not trust).
    bad_cert = ca.issue_untrusted(["localhost"], directory=tmp_path / "radicale-bad")
    rad_bad = Radicale(tmp_path, "bad-cert", ca.untrusted().ca_path, bad_cert, users, rights,
                       collections)
    cluster = Cluster(tmp_path / "cluster",
                      extra_args=["--tls-ca", str(ca.ca_path),
                                  "--calendar-poll-seconds", str(POLL)])
    try:
        rad_a.start()
        rad_b.start()
        rad_bad.start()
        cluster.start_cluster(2)
        _scenario(cluster, ca, rad_a, rad_b, rad_bad, owner_name, owner_pw)
    except BaseException:
        print(f"\n{cluster.all_log_tails(60)}\n{rad_a.log_tail()}\n{rad_b.log_tail()}",
              file=sys.stderr)
        raise
    finally:
        cluster.stop()
        rad_a.stop()
        rad_b.stop()
        rad_bad.stop()
    elapsed = time.monotonic() - t_start
    assert elapsed < 60, f"the calendar test took {elapsed:.0f}s (budget: well under 60 s)"


def _sync_total(cluster: Cluster, result: str) -> float:
    """herald_calendar_caldav_sync_total{result} summed over the nodes."""
    return sum(metric(cluster, n, "herald_calendar_caldav_sync_total", result=result)
               for n in cluster.nodes)


def _scenario(cluster: Cluster, ca: TestCA, rad_a: Radicale, rad_b: Radicale,
              rad_bad: Radicale, owner_name: str, owner_pw: str) -> None:
    # Exchange WebDAV is refused by the CLI, with the reason.
    out = cluster.cli_raw(None, "calendar-gateway", "add", "old-owa", "--kind", "webdav",
                          "--host", "owa.example.test")
    assert out.returncode != 0, f"--kind webdav was accepted: {out.stdout!r}"
    assert "WebDAV is not supported" in out.stderr, out.stderr
    assert "old-owa" not in cluster.cli(None, "calendar-gateway", "list")

    cluster.cli(None, "calendar-gateway", "add", "cal-a", "--kind", "caldav",
                "--host", "localhost", "--port", str(rad_a.port), "--path", "/")
    cluster.cli(None, "calendar-gateway", "set-credentials", "--kind", "caldav",
                "--account", SERVICE_ACCOUNT, "--password", SERVICE_PASSWORD)

    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    carol, cpw = cluster.new_user("carol")
    cluster.cli(None, "user", "update", alice, "--calendar-enabled", "true",
                "--calendar-mailbox", owner_name)
    wait_until(lambda: cluster.user(alice).get("calendar_gateway") == "cal-a", 15,
               "alice assigned to gateway cal-a (`user show`: calendar_gateway)")
    g = wait_until(lambda: (lambda s: s if s.get("last_check_at") else None)(
        _gateway(cluster, "cal-a")), 15, "a first check of gateway cal-a")
    assert g["reachable"] and g["certificate_ok"] and g["authenticated"], g
    assert g["last_error"] == "", g

    # A gateway with a certificate from an untrusted CA: a clear status, never chosen.
    cluster.cli(None, "calendar-gateway", "add", "cal-bad", "--kind", "caldav",
                "--host", "localhost", "--port", str(rad_bad.port), "--path", "/")
    bad = wait_until(lambda: (lambda s: s if s.get("last_error") else None)(
        _gateway(cluster, "cal-bad")), 15, "a failed check of gateway cal-bad")
    assert bad["reachable"] and not bad["certificate_ok"] and not bad["authenticated"], bad
    assert "untrusted CA" in bad["last_error"], bad
    assert cluster.user(alice).get("calendar_gateway") == "cal-a"

    owner = Owner(rad_a, owner_name, owner_pw, ca.ca_path)
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
            await b.expect_presence(alice, "alice's approval", ptype="subscribed")
            # No calendar yet (her home does not exist): her own presence.
            await b.expect_presence(alice, "alice's own presence", ptype="available", show="",
                                    status="at my desk")
            # carol watches alice too, until alice blocks her.
            c = await xc.login(carol, cpw, nb)
            await c.online()
            c.send_presence(pto=alice, ptype="subscribe")
            await a.expect_presence(carol, "carol's subscription request", ptype="subscribe")
            a.send_presence(pto=carol, ptype="subscribed")
            await c.expect_presence(alice, "alice's presence for carol", ptype="available",
                                    status="at my desk")
            await a.block(carol)
            await c.expect_presence(alice, "unavailable after alice blocked carol",
                                    ptype="unavailable")

            now = _utcnow()
            meeting = await asyncio.to_thread(
                owner.add_event, now - datetime.timedelta(minutes=10),
                now + datetime.timedelta(minutes=50), "Quarterly review")
            p = await b.expect_presence(alice, "alice in a meeting", show="away",
                                        status=MEETING_STATUS, timeout=CHANGE_TIMEOUT)
            ext = p.xml.find("{urn:x-herald:availability:0}availability")
            assert ext is not None and ext.get("state") == "busy" \
                and ext.get("overlay") == "in-a-meeting", f"availability extension: {p}"
            # The calendar does not reach past a block.
            leaked = [str(x) for x in await c.drain(c.presences, 1.0)
                      if str(x["from"]).startswith(alice)]
            assert leaked == [], f"blocked carol saw alice's calendar presence: {leaked}"

            # Her own changes during the meeting still show the meeting (only the status
            # text she set is replaced while the overlay stands).
            a.send_presence(pstatus="still at my desk")
            await b.expect_presence(alice, "alice's new presence, still in a meeting",
                                    show="away", status=MEETING_STATUS)

            # Gateway down: cal-a's Radicale stops. Its status says so, alice moves to cal-b.
            cluster.cli(None, "calendar-gateway", "add", "cal-b", "--kind", "caldav",
                        "--host", "localhost", "--port", str(rad_b.port), "--path", "/")
            await asyncio.to_thread(rad_a.stop)
            gs = await asyncio.to_thread(wait_until, lambda: (lambda s: s if (
                not s["reachable"] and "cannot connect" in s["last_error"]
                and s["last_error_at"]) else None)(_gateway(cluster, "cal-a")), 15,
                "`calendar-gateway status`: cal-a unreachable with the connect error")
            assert not gs["authenticated"], gs
            await asyncio.to_thread(
                wait_until, lambda: cluster.user(alice).get("calendar_gateway") == "cal-b",
                15, "alice reassigned to gateway cal-b")
            # Nothing changed in her calendar: the meeting still shows (no flap to her own
            # presence while the gateway changed).
            flaps = [str(x) for x in await b.drain(b.presences, 2 * POLL + 1)
                     if str(x["from"]).startswith(alice) and x["status"] != MEETING_STATUS]
            assert flaps == [], f"bob saw alice's presence change during failover: {flaps}"

            # Radicale keeps sync tokens: polls while nothing changes only ask what changed
            # (RFC 6578 sync-collection) instead of reading the calendar again.
            await asyncio.to_thread(
                wait_until, lambda: _sync_total(cluster, "unchanged") >= 2, 5 * POLL + 5,
                "CalDAV polls answered by sync-collection (unchanged)")
            changed = _sync_total(cluster, "changed")

            # The meeting is cancelled through the other server: her own presence returns.
            owner_b = Owner(rad_b, owner_name, owner_pw, ca.ca_path)
            await asyncio.to_thread(owner_b.delete_event, meeting)
            await b.expect_presence(alice, "alice's own presence after the meeting was deleted",
                                    show="", status="still at my desk",
                                    timeout=CHANGE_TIMEOUT)
            assert _sync_total(cluster, "changed") > changed, \
                "the deletion was not seen by sync-collection"

            # A short meeting ends by itself: busy at its start, her own presence at its end.
            now = _utcnow()
            await asyncio.to_thread(owner_b.add_event, now - datetime.timedelta(minutes=1),
                                    now + datetime.timedelta(seconds=8), "Quick sync")
            await b.expect_presence(alice, "alice in the short meeting", show="away",
                                    status=MEETING_STATUS, timeout=CHANGE_TIMEOUT)
            await b.expect_presence(alice, "alice's own presence when the short meeting ended",
                                    show="", status="still at my desk",
                                    timeout=CHANGE_TIMEOUT)
    run(body(), timeout=45)
