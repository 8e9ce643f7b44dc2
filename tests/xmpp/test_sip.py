"""SIP federation, first slice: page-mode IM (RFC 3428) over TCP between a real SIP peer (SIPp)
and real slixmpp clients on a 3-node Herald cluster.

The SIP peer (SIPp, Debian `sip-tester`) sits on its own loopback address of the cluster's
subnet; the domain `sip.test` is federated, admitted by an IP ACL entry, and routed statically
to SIPp's UAS port. The routing node is set to a node other than the recipient's home node, so
an inbound MESSAGE crosses the cluster before it reaches the user.

Every wait is bounded: SIPp runs with -timeout and under a subprocess timeout; XMPP waits use
the client helpers' timeouts.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

from harness import Cluster, wait_until
from xmpp_client import Clients, bare, run

SIP_DOMAIN = "sip.test"
SIP_PORT = 5060
UAS_PORT = 5070
SIPP_TIMEOUT = 20



@pytest.fixture(autouse=True)
def _sipp_installed() -> None:
    # A missing peer fails the test rather than skipping it (scripts/test installs it).
    assert shutil.which("sipp"), "SIPp is not installed: apt-get install sip-tester"


def sipp_ip(cluster: Cluster) -> str:
    """SIPp's own address, in the cluster's claimed subnet."""
    return f"127.{cluster.subnet[0]}.{cluster.subnet[1]}.200"


UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="MESSAGE to Herald">
  <send>
    <![CDATA[
      MESSAGE sip:{to} SIP/2.0
      Via: SIP/2.0/TCP [local_ip]:[local_port];branch=[branch]
      From: <sip:{frm}>;tag=[call_number]
      To: <sip:{to}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      {body}
    ]]>
  </send>
  <recv response="{code}" timeout="10000" />
</scenario>
"""

UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="SIP user agent accepting Herald's IM session and answering its MESSAGE">
  <recv request="INVITE" timeout="15000" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]uas[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 0 0 IN IP4 [local_ip]
      s=session
      c=IN IP4 [local_ip]
      t=0 0
      m=message [local_port] sip null
    ]]>
  </send>
  <recv request="ACK" timeout="15000" />
  <recv request="MESSAGE" timeout="15000" />
  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def sipp_cmd(cluster: Cluster, scenario: Path, extra: list[str]) -> list[str]:
    return ["sipp", "-sf", str(scenario), "-t", "t1", "-i", sipp_ip(cluster), "-m", "1",
            "-nostdin", "-timeout", f"{SIPP_TIMEOUT}s", "-timeout_error",
            "-trace_err", "-error_file", str(scenario.with_suffix(".err")),
            "-trace_msg", "-message_file", str(scenario.with_suffix(".msg")), *extra]


def uac(cluster: Cluster, tmp: Path, node: int, *, to: str, frm: str, body: str,
        code: int) -> None:
    """SIPp sends one MESSAGE to node `node`; fails unless the answer is `code`."""
    sc = tmp / f"uac-{code}-{time.monotonic_ns()}.xml"
    sc.write_text(UAC.format(to=to, frm=frm, body=body, code=code))
    p = subprocess.run(sipp_cmd(cluster, sc, ["-p", "0", f"{cluster.ip(node)}:{SIP_PORT}"]),
                       cwd=tmp, capture_output=True, timeout=SIPP_TIMEOUT + 10)
    msgs = sc.with_suffix(".msg").read_text(errors="replace") if sc.with_suffix(".msg").exists() \
        else "(no message log)"
    assert p.returncode == 0, (
        f"SIPp UAC expected {code} for MESSAGE {frm} -> {to} (rc {p.returncode})\n"
        f"--- SIPp messages ---\n{msgs[-3000:]}\n--- stderr ---\n{p.stderr.decode()[-2000:]}")


class Uas:
    """SIPp as the SIP domain's server: accepts Herald's IM session (INVITE, 200, ACK) and
    answers the MESSAGE inside it with `code`."""

    def __init__(self, cluster: Cluster, tmp: Path, code: int, reason: str) -> None:
        self.sc = tmp / f"uas-{code}-{time.monotonic_ns()}.xml"
        self.sc.write_text(UAS.format(code=code, reason=reason))
        self.proc = subprocess.Popen(
            sipp_cmd(cluster, self.sc, ["-p", str(UAS_PORT)]), cwd=tmp,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ip = sipp_ip(cluster)
        wait_until(lambda: self.proc.poll() is not None or listening(ip, UAS_PORT), 10,
                   f"SIPp UAS listening on {ip}:{UAS_PORT}")
        assert self.proc.poll() is None, f"SIPp UAS exited: {self.proc.stderr.read().decode()}"

    def wait(self) -> str:
        """Waits for SIPp to finish its one call; returns the messages it saw."""
        try:
            rc = self.proc.wait(timeout=SIPP_TIMEOUT + 10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
        log = self.sc.with_suffix(".msg")
        msgs = log.read_text(errors="replace") if log.exists() else "(no message log)"
        assert rc == 0, f"SIPp UAS failed (rc {rc}):\n{msgs[-3000:]}"
        return msgs

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def listening(ip: str, port: int) -> bool:
    """Whether a TCP socket listens on ip:port (read from /proc/net/tcp: no tool needed)."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == want and line.split()[3] == "0A"
                   for line in f.readlines()[1:])


def raw_exchange(ip: str, port: int, data: bytes, timeout: float = 5.0) -> str:
    """Sends raw bytes to a SIP TCP port and returns the first response's start line."""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in buf and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\r\n", 1)[0].decode(errors="replace")


def request(method: str, to: str, frm: str, body: str = "", extra: str = "",
            length: Optional[int] = None) -> bytes:
    n = len(body.encode()) if length is None else length
    return (f"{method} sip:{to} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKraw{time.monotonic_ns()}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{frm}>;tag=r1\r\nTo: <sip:{to}>\r\n"
            f"Call-ID: raw{time.monotonic_ns()}\r\nCSeq: 1 {method}\r\n{extra}"
            f"Content-Length: {n}\r\n\r\n{body}").encode()


def configure(cluster: Cluster, routing: int) -> None:
    cluster.cli(None, "sip-domain", "add", SIP_DOMAIN, "--type", "generic-sip")
    cluster.cli(None, "acl", "add", "sipp", "--kind", "ip", "--pattern", sipp_ip(cluster))
    cluster.cli(None, "static-route", "add", "sipp", "--domain", SIP_DOMAIN, "--next-hop",
                sipp_ip(cluster), "--port", str(UAS_PORT), "--transport", "tcp")
    cluster.cli(None, "routing-node", "set", str(routing))
    cluster.wait_converged(cluster.nodes)


def metric(cluster: Cluster, node: int, name: str, **labels: str) -> float:
    _, text = cluster.http_get(node, "/metrics")
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_sip_message_both_ways_through_the_routing_node(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    alice, apw = cluster.new_user("alice")
    home = cluster.home_node(alice)
    routing = next(n for n in cluster.nodes if n != home)
    other = next(n for n in cluster.nodes if n not in (home, routing))
    configure(cluster, routing)
    user = alice.split("@")[0]

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, other)
            await a.online()

            # Inbound: SIPp → routing node → alice's home node → alice's session.
            await asyncio.to_thread(uac, cluster, tmp_path, routing, to=alice,
                                    frm=f"bob@{SIP_DOMAIN}", body="hello from SIPp", code=200)
            got = await a.expect_messages(f"bob@{SIP_DOMAIN}", 1, timeout=15)
            # SIPp ends every body with a line end.
            assert got[0]["body"].strip() == "hello from SIPp", got[0]
            assert got[0]["type"] == "chat", got[0]

            # Refusals, each with its own status.
            uac(cluster, tmp_path, routing, to=alice, frm="eve@unfederated.test",
                body="x", code=403)
            uac(cluster, tmp_path, routing, to=f"nobody-{user}@{cluster.domain}",
                frm=f"bob@{SIP_DOMAIN}", body="x", code=404)
            # A node that is not the routing node relays to it (test_sip_relay.py): the
            # routing node's answer comes back.
            uac(cluster, tmp_path, home, to=alice, frm="eve@unfederated.test", body="x",
                code=403)
            # Nothing refused reached alice.
            late = await a.drain(a.messages, 1.0)
            assert not late, [m["body"] for m in late]

            # Outbound: alice → SIPp UAS (200): no error comes back, SIPp saw the body.
            uas = Uas(cluster, tmp_path, 200, "OK")
            try:
                a.chat(f"carol@{SIP_DOMAIN}", "hi carol over SIP")
                # Off the event loop: slixmpp must keep running to send the message.
                msgs = await asyncio.to_thread(uas.wait)
            finally:
                uas.stop()
            # Session mode: one INVITE (m=message), then the MESSAGE inside its dialog.
            assert "INVITE sip:carol@sip.test SIP/2.0" in msgs, msgs[-2000:]
            assert "m=message" in msgs and "MESSAGE sip:uas@" in msgs, msgs[-2000:]
            assert "hi carol over SIP" in msgs, msgs[-2000:]
            assert f"<sip:{user}@{cluster.domain}>" in msgs, msgs[-2000:]
            errors = await a.drain(a.message_errors, 1.0)
            assert not errors, [str(e) for e in errors]

            # Outbound refused by the SIP side: the XMPP sender gets an error.
            uas = Uas(cluster, tmp_path, 486, "Busy Here")
            try:
                a.chat(f"dave@{SIP_DOMAIN}", "are you there?")
                await asyncio.to_thread(uas.wait)
            finally:
                uas.stop()
            err = await a.expect(a.message_errors,
                                 lambda m: bare(m["from"]) == f"dave@{SIP_DOMAIN}",
                                 "an error for the refused SIP MESSAGE", 15)
            assert err["error"]["condition"] == "recipient-unavailable", err
            assert "486" in err["error"]["text"], err

            # No SIP peer listening: the message bounces instead of vanishing.
            a.chat(f"erin@{SIP_DOMAIN}", "anyone?")
            err = await a.expect(a.message_errors,
                                 lambda m: bare(m["from"]) == f"erin@{SIP_DOMAIN}",
                                 "an error when the SIP peer is unreachable", 20)
            assert err["error"]["condition"] in ("remote-server-not-found",
                                                 "remote-server-timeout"), err
            # Sent while the link backs off: retried when the backoff ends, bounced again.
            a.chat(f"frank@{SIP_DOMAIN}", "still nobody?")
            await a.expect(a.message_errors,
                           lambda m: bare(m["from"]) == f"frank@{SIP_DOMAIN}",
                           "an error after the retry at the end of the backoff", 20)
            # The peer is back: the link recovers and the next message is delivered.
            uas = Uas(cluster, tmp_path, 200, "OK")
            try:
                a.chat(f"grace@{SIP_DOMAIN}", "welcome back")
                msgs = await asyncio.to_thread(uas.wait)
            finally:
                uas.stop()
            assert "welcome back" in msgs, msgs[-2000:]
            errors = await a.drain(a.message_errors, 1.0)
            assert not errors, [str(e) for e in errors]
    run(body(), timeout=110)

    assert metric(cluster, routing, "herald_sip_messages_total", direction="inbound") >= 1
    assert metric(cluster, routing, "herald_sip_failures_total",
                  reason="domain_not_federated") >= 1
    assert metric(cluster, routing, "herald_sip_failures_total", reason="no_user") >= 1
    assert metric(cluster, home, "herald_sip_relayed_connections_total", transport="tcp") >= 1


def closed_after(sock: socket.socket, opened: float, cap: float) -> tuple[Optional[bytes], float]:
    """Waits (until `cap` seconds after `opened`) for the server to close `sock`, then closes
    it: what the first read got (b"" for a close, None for still open) and the seconds since
    `opened`."""
    sock.settimeout(max(1.0, cap - (time.monotonic() - opened)))
    try:
        got: Optional[bytes] = sock.recv(4096)
    except (socket.timeout, TimeoutError):
        got = None
    finally:
        sock.close()
    return got, time.monotonic() - opened


def test_bad_sip_input_is_answered_never_dropped(cluster: Cluster) -> None:
    alice, _ = cluster.new_user("alice")
    routing = cluster.nodes[0]
    configure(cluster, routing)
    ip = cluster.ip(routing)
    frm = f"bob@{SIP_DOMAIN}"
    # The ACL admits SIPp's address only: these raw requests come from elsewhere.
    assert raw_exchange(ip, SIP_PORT, request("OPTIONS", alice, frm)).startswith(
        "SIP/2.0 403"), "a source outside the ACL must be refused"
    cluster.cli(None, "acl", "add", "loopback", "--kind", "all")
    cluster.wait_converged(cluster.nodes)
    # Slowloris: half a request, then silence; and a connection that sends nothing (both
    # checked at the end).
    slow = socket.create_connection((ip, SIP_PORT), timeout=5)
    slow.sendall(request("OPTIONS", alice, frm)[:40])
    silent = socket.create_connection((ip, SIP_PORT), timeout=5)
    opened = time.monotonic()
    rows = [
        (request("OPTIONS", alice, frm), "SIP/2.0 200"),
        (request("MESSAGE", alice, frm, "hi", "Content-Type: text/html\r\n"), "SIP/2.0 415"),
        # SUBSCRIBE without an Event header: not a presence subscription (RFC 6665 §8.2.1).
        (request("SUBSCRIBE", alice, frm), "SIP/2.0 489"),
        (request("SUBSCRIBE", alice, frm, "", "Event: presence\r\nExpires: 5\r\n"),
         "SIP/2.0 423"),
        # A method the edge does not serve.
        (request("INFO", alice, frm), "SIP/2.0 405"),
        (b"HELLO WORLD\r\n\r\n", "SIP/2.0 400"),
        (request("MESSAGE", alice, frm, "", "Content-Type: text/plain\r\n", length=10_000_000),
         "SIP/2.0 413"),
        (request("MESSAGE", alice, frm, "hi").replace(b"Call-ID", b"X-Call-ID"), "SIP/2.0 400"),
    ]
    for data, want in rows:
        got = raw_exchange(ip, SIP_PORT, data)
        assert got.startswith(want), f"{data[:60]!r}...: expected {want}, got {got!r}"
    # Still serving.
    assert raw_exchange(ip, SIP_PORT, request("OPTIONS", alice, frm)).startswith("SIP/2.0 200")
    assert metric(cluster, routing, "herald_sip_failures_total", reason="decode") >= 3
    # Connection flood from one source: past MAX_INBOUND_PER_SOURCE (256) the next connection
    # is closed at once, others are served, and a freed slot is usable again.
    src = cluster.ip(201)
    held = [socket.create_connection((ip, SIP_PORT), timeout=5, source_address=(src, 0))
            for _ in range(256)]
    try:
        with socket.create_connection((ip, SIP_PORT), timeout=5,
                                      source_address=(src, 0)) as extra:
            try:
                got = extra.recv(1)
            except ConnectionResetError:
                got = b""
            assert got == b"", f"the 257th connection from {src} was served: {got!r}"
        assert raw_exchange(ip, SIP_PORT, request("OPTIONS", alice, frm)).startswith(
            "SIP/2.0 200"), "another source was refused during the flood"
    finally:
        for c in held:
            c.close()
    assert metric(cluster, routing, "herald_sip_failures_total",
                  reason="too_many_from_source") >= 1

    def served_from_src() -> bool:
        with socket.create_connection((ip, SIP_PORT), timeout=5,
                                      source_address=(src, 0)) as s:
            s.sendall(request("OPTIONS", alice, frm))
            try:
                return s.recv(64).startswith(b"SIP/2.0 200")
            except (socket.timeout, ConnectionResetError):
                return False
    wait_until(served_from_src, 10, f"{src} served again after its connections closed")

    # The half request was cut off 20 s after its first byte (MESSAGE_TIME), unanswered.
    got, waited = closed_after(slow, opened, 40.0)
    assert got == b"", f"half a request: got {got!r} after {waited:.1f}s"
    assert 19.0 <= waited <= 35.0, f"half a request was cut off after {waited:.1f}s"
    assert metric(cluster, routing, "herald_sip_failures_total", reason="message_timeout") >= 1
    # The silent one was closed 20 s after it opened, unanswered.
    got, waited = closed_after(silent, opened, 40.0)
    assert got == b"", f"a silent connection: got {got!r} after {waited:.1f}s"
    assert 19.0 <= waited <= 35.0, f"a silent connection was closed after {waited:.1f}s"
    assert metric(cluster, routing, "herald_sip_failures_total", reason="silent") >= 1


class NotifySink:
    """A SIP watcher's Contact: accepts Herald's TCP connection on `ip:port`, answers every
    NOTIFY with 200 on that connection and keeps the NOTIFYs (start line and headers, body)."""

    def __init__(self, ip: str, port: int) -> None:
        self.srv = socket.create_server((ip, port))
        self.srv.settimeout(0.2)
        self.got: list[str] = []
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conns: list[socket.socket] = []
        bufs: dict[socket.socket, bytes] = {}
        while not self.stop:
            try:
                c, _ = self.srv.accept()
                c.settimeout(0.05)
                conns.append(c)
                bufs[c] = b""
            except (socket.timeout, OSError):
                pass
            for c in list(conns):
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if not data:
                    conns.remove(c)
                    continue
                bufs[c] += data
                while b"\r\n\r\n" in bufs[c]:
                    head, _, rest = bufs[c].partition(b"\r\n\r\n")
                    n = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
                    if len(rest) < n:
                        break
                    msg = (head + b"\r\n\r\n" + rest[:n]).decode(errors="replace")
                    bufs[c] = rest[n:]
                    if msg.startswith("NOTIFY"):
                        hdrs = [l for l in msg.split("\r\n")
                                if l.split(":")[0].lower() in ("via", "from", "to", "call-id",
                                                               "cseq")]
                        c.sendall(("SIP/2.0 200 OK\r\n" + "\r\n".join(hdrs)
                                   + "\r\nContent-Length: 0\r\n\r\n").encode())
                        with self.cond:
                            self.got.append(msg)
                            self.cond.notify_all()
        for c in conns:
            c.close()

    def wait(self, pred, what: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hit = next((m for m in self.got if pred(m)), None)
                if hit:
                    return hit
                left = deadline - time.monotonic()
                assert left > 0, f"no NOTIFY with {what} within {timeout}s; got {self.got}"
                self.cond.wait(left)

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.srv.close()


def test_sip_watcher_sees_presence_without_a_static_route(cluster: Cluster) -> None:
    """A SIP watcher's NOTIFYs follow its dialog (its Contact), so they need no static route
    for its domain: the user's approval and later changes reach the watcher (found by
    bench/sip.sh; before the fix, presence to a SIP domain without a route was bounced)."""
    alice, apw = cluster.new_user("alice")
    home = cluster.home_node(alice)
    routing = next(n for n in cluster.nodes if n != home)
    cluster.cli(None, "sip-domain", "add", SIP_DOMAIN, "--type", "generic-sip")
    cluster.cli(None, "acl", "add", "sipp", "--kind", "ip", "--pattern", sipp_ip(cluster))
    cluster.cli(None, "routing-node", "set", str(routing))
    cluster.wait_converged(cluster.nodes)
    ip = sipp_ip(cluster)
    sink = NotifySink(ip, UAS_PORT)
    bob = f"bob@{SIP_DOMAIN}"

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, home)
            await a.online(status="at my desk")
            sub = (f"SUBSCRIBE sip:{alice} SIP/2.0\r\n"
                   f"Via: SIP/2.0/TCP {ip}:5099;branch=z9hG4bKnr{time.monotonic_ns()}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:{bob}>;tag=w1\r\nTo: <sip:{alice}>\r\n"
                   f"Call-ID: noroute{time.monotonic_ns()}\r\nCSeq: 1 SUBSCRIBE\r\n"
                   f"Contact: <sip:bob@{ip}:{UAS_PORT};transport=tcp>\r\nEvent: presence\r\n"
                   "Accept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
            with socket.create_connection((cluster.ip(routing), SIP_PORT), timeout=5,
                                          source_address=(ip, 0)) as s:
                s.sendall(sub.encode())
                first = s.recv(4096).split(b"\r\n", 1)[0].decode()
            assert first.startswith("SIP/2.0 202"), first
            await a.expect_presence(bob, "the SIP watcher's subscription request",
                                    ptype="subscribe")
            a.send_presence(pto=bob, ptype="subscribed")
            n = await asyncio.to_thread(
                sink.wait, lambda m: "Subscription-State: active" in m and "<basic>open" in m,
                "the approved watcher's active NOTIFY showing alice open")
            assert "at my desk" in n, n
            a.send_presence(pstatus="in a meeting")
            await asyncio.to_thread(sink.wait, lambda m: "in a meeting" in m,
                                    "alice's status change")
    try:
        run(body(), timeout=60)
    finally:
        sink.close()


def test_email_for_federation_on_the_sip_edge(cluster: Cluster, tmp_path: Path) -> None:
    """EMAIL-2/3/4 over SIP: with email for federation on, alice is known to the SIP domain by
    her mail address — her outbound IM session's From carries it, a MESSAGE to it reaches her —
    and a MESSAGE to her raw JID is refused as if she did not exist (404), counted."""
    alice, apw = cluster.new_user("alice")
    home = cluster.home_node(alice)
    routing = next(n for n in cluster.nodes if n != home)
    configure(cluster, routing)
    mail = "alice.liddell@mail.test"
    cluster.cli(None, "user", "update", alice, "--mail-id", mail)
    cluster.cli(None, "email-federation", "enable", "--confirm")
    cluster.wait_converged(cluster.nodes)

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, home)
            await a.online()
            # Inbound to the mail address: delivered to alice.
            await asyncio.to_thread(uac, cluster, tmp_path, routing, to=mail,
                                    frm=f"bob@{SIP_DOMAIN}", body="to your mail address",
                                    code=200)
            got = await a.expect_messages(f"bob@{SIP_DOMAIN}", 1, timeout=15)
            assert got[0]["body"].strip() == "to your mail address", got[0]
            # Inbound to the raw JID: 404, nothing delivered.
            await asyncio.to_thread(uac, cluster, tmp_path, routing, to=alice,
                                    frm=f"bob@{SIP_DOMAIN}", body="to your JID", code=404)
            leaked = [m for m in await a.drain(a.messages, 1.0) if m["body"]]
            assert not leaked, [m["body"] for m in leaked]
            # Outbound: the SIP side sees her mail address as the sender.
            uas = Uas(cluster, tmp_path, 200, "OK")
            try:
                a.chat(f"carol@{SIP_DOMAIN}", "from my mail address")
                msgs = await asyncio.to_thread(uas.wait)
            finally:
                uas.stop()
            assert f"From: <sip:{mail}>" in msgs, msgs[-2000:]
            # Her user id appears nowhere (From, Contact, SDP): only the mail address.
            assert alice.split("@")[0] not in msgs, msgs[-2000:]
            assert not await a.drain(a.message_errors, 0.5)
    run(body(), timeout=90)
    assert metric(cluster, routing, "herald_sip_failures_total", direction="inbound",
                  reason="email_drop") >= 1


def test_backup_static_route_takes_over_when_the_primary_is_down(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    """RTE-4: two static routes for the domain; the primary's next hop refuses connections,
    so the message (an IM session) goes by the backup route without an error, and so does the
    next one."""
    alice, apw = cluster.new_user("alice")
    routing = cluster.home_node(alice)
    cluster.cli(None, "sip-domain", "add", SIP_DOMAIN, "--type", "generic-sip")
    cluster.cli(None, "static-route", "add", "primary", "--domain", SIP_DOMAIN, "--next-hop",
                sipp_ip(cluster), "--port", str(UAS_PORT + 1), "--transport", "tcp",
                "--priority", "10")
    cluster.cli(None, "static-route", "add", "backup", "--domain", SIP_DOMAIN, "--next-hop",
                sipp_ip(cluster), "--port", str(UAS_PORT), "--transport", "tcp",
                "--priority", "20")
    cluster.cli(None, "routing-node", "set", str(routing))
    cluster.wait_converged(cluster.nodes)

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, routing)
            await a.online()
            for to, text in ((f"carol@{SIP_DOMAIN}", "by the backup"),
                             (f"dave@{SIP_DOMAIN}", "backup again")):
                uas = Uas(cluster, tmp_path, 200, "OK")
                try:
                    a.chat(to, text)
                    msgs = await asyncio.to_thread(uas.wait)
                finally:
                    uas.stop()
                assert text in msgs, msgs[-2000:]
            assert not await a.drain(a.message_errors, 0.5)
    run(body(), timeout=60)
    assert metric(cluster, routing, "herald_sip_rerouted_total") == 1
