"""The hostile-input catalogue (issue 14): one row per class of bad input, sent over the wire to
a real `herald` node. Each row checks the exact answer the protocol prescribes (stream error,
stanza error type and condition, SASL failure, gRPC status, the bound a timeout keeps), then
that the node still runs and that two ordinary clients on it can still chat.

The rows share one 3-node cluster (started once for this module) with small per-user limits, an
admin token and a cluster token. Each row connects from its own 127.x source address, so what
the server counts per client address (failed logins) stays inside the row. The slowloris rows
wait for the server's negotiation bound (60 s): their connections are opened when the first row
starts, so the wait overlaps the other rows.

test_bad_input.py holds the first seven classes (XML bomb, oversized stanza, invalid UTF-8,
stanzas before TLS or SASL, unknown top-level element, HTTP on c2s); tests/README.md lists the
whole catalogue.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import grpc
import pytest

from harness import (C2S_PORT, C2S_TLS_PORT, CLUSTER_PORT, ADMIN_PORT, HTTP_PORT, Cluster,
                     HarnessError,
                     wait_until)
from raw_xmpp import (BIND_NS, READ_TIMEOUT, SASL_NS, RawError, RawStream, scram_client_final,
                      stanza_error, stream_header)
from xmpp_client import assert_pair_chats

NODE = 2

# The limits the module's cluster runs with ([xmpp] in its herald.toml).
MAX_DEPTH = 32
ROSTER_MAX = 3
BLOCKED_MAX = 3
OFFLINE_MAX = 3
ADMIN_TOKEN = "tok-123456789"
CLUSTER_TOKEN = "ctok-2f8e1c9a"

# Server constants this catalogue pins (see the Rust source named).
#: node/src/xmpp/session.rs NEGOTIATION_TIMEOUT: connect to bound resource.
NEGOTIATION_TIMEOUT = 60.0
#: proto/xmpp/src/c2s/mod.rs MAX_AUTH_FAILURES: the one after the last closes the stream.
MAX_AUTH_FAILURES = 3
#: node/src/xmpp/session.rs: after the n-th failure nothing is read for n × 0.5 s.
FAILURE_PAUSE = 0.5
#: node/src/xmpp/limiter.rs FREE_FAILURES, MAX_DELAY: failures from one address before its
#: new connections wait 2^(n - FREE_FAILURES) s, at most MAX_DELAY.
FREE_FAILURES = 5
MAX_DELAY = 30.0
#: RFC 7622 §3: each part of a JID is at most 1023 bytes.
MAX_PART = 1023

#: Slack on timings measured across processes on a busy 2-core machine.
SLACK = 10.0

TOKEN_HEADER = "x-herald-cluster-token"
NODE_API = "/herald.cluster.v1.NodeApi/"
ADMIN_API = "/herald.admin.v1.Admin/"
UNARY_NODE_CALLS = ("Status", "Join", "Propose", "ChangeMembership", "Removed", "LocalSessions")


class SlowConn:
    """A connection that sends `prefix` and then nothing; a thread reads until the server
    closes it (or `cap` seconds pass) and records when and what it got."""

    def __init__(self, host: str, port: int, source: str, prefix: bytes, cap: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=5,
                                             source_address=(source, 0))
        self.opened = time.monotonic()
        self.data = b""
        self.end: Optional[str] = None
        self.closed_after: Optional[float] = None
        if prefix:
            self.sock.sendall(prefix)
        self.sock.settimeout(cap)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.end = "eof"
                    break
                self.data += chunk
        except (socket.timeout, TimeoutError):
            self.end = "still open"
        except OSError as exc:
            self.end = f"error {exc}"
        self.closed_after = time.monotonic() - self.opened

    def wait(self, cap: float) -> tuple[str, float, bytes]:
        """(how it ended, seconds from connect, bytes received); bounded by `cap` seconds."""
        self.thread.join(max(0.0, cap - (time.monotonic() - self.opened)) + 1.0)
        if self.thread.is_alive():
            return "still open", time.monotonic() - self.opened, self.data
        return self.end or "?", self.closed_after or 0.0, self.data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class Hostile:
    """The module's cluster, the ordinary pair that proves others are unaffected, and the
    slowloris connections opened at the start."""
    cluster: Cluster
    alice: tuple[str, str]
    bob: tuple[str, str]
    slow: dict[str, SlowConn] = field(default_factory=dict)

    def raw(self, source: str, timeout: float = READ_TIMEOUT) -> RawStream:
        """A raw c2s connection to node NODE from address `source`."""
        return RawStream(self.cluster.ip(NODE), C2S_PORT, ca=self.cluster.ca(NODE),
                         source=source, timeout=timeout)

    def user(self, name: str) -> tuple[str, str]:
        """A new user, once node NODE has applied it (a write through another node returns
        when the leader commits it; NODE may apply it a moment later)."""
        jid, pw = self.cluster.new_user(name)
        wait_until(lambda: self.cluster.user(jid, via=NODE), 10.0,
                   f"node {NODE} to know the new user {jid}")
        return jid, pw

    def source(self, n: int) -> str:
        """A client address inside the cluster's own /24 (nodes use .1 to .3)."""
        return self.cluster.ip(n)


# ---------------------------------------------------------------------------------------------
# XML and stream rows


def _external_entity(h: Hostile, src: str) -> None:
    prolog = "<!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    with h.raw(src) as s:
        s.send(stream_header(h.cluster.domain, prolog).replace(b"to='", b"to='&xxe;", 1))
        s.expect_stream_error({"restricted-xml"}, "a DOCTYPE declaring an external entity")
        assert "root:" not in "".join(s.log), f"the external entity was read: {s.log}"


def _doctype(h: Hostile, src: str) -> None:
    with h.raw(src) as s:
        s.send(stream_header(h.cluster.domain, "<!DOCTYPE stream:stream>"))
        s.expect_stream_error({"restricted-xml"}, "a DOCTYPE without entities")


def _nest(depth: int) -> str:
    return "<x xmlns='urn:example:deep'>" * depth + "</x>" * depth


def _deep_nesting(h: Hostile, src: str) -> None:
    me, pw = h.user("deep")
    with h.raw(src) as s:
        full = s.login(me, pw)
        # The stanza is depth 1: MAX_DEPTH - 1 levels inside it are still fine.
        s.send(f"<message to='{full}' id='deep-ok'>{_nest(MAX_DEPTH - 1)}</message>")
        back = s.read_stanza("deep-ok", f"a message nested {MAX_DEPTH} deep, sent to myself")
        assert back.get("type") != "error", stanza_error(back)
        s.send(f"<message to='{full}' id='deep-over'>{_nest(MAX_DEPTH)}</message>")
        s.expect_stream_error({"policy-violation"}, f"a message nested {MAX_DEPTH + 1} deep")


def _nul_byte(h: Hostile, src: str) -> None:
    me, pw = h.user("nul")
    with h.raw(src) as s:
        s.login(me, pw)
        s.send(b"<message to='" + me.encode() + b"'><body>a\x00b</body></message>")
        s.expect_stream_error({"not-well-formed"}, "a NUL byte in character data")


def _stanza_before_bind(h: Hostile, src: str) -> None:
    me, pw = h.user("unbound")
    with h.raw(src) as s:
        s.authenticate(me, pw, s.starttls())
        s.buf = ""
        assert BIND_NS in s.open_stream(), "bind not offered after SASL"
        s.send(f"<message to='{me}' type='chat'><body>before bind</body></message>")
        s.expect_stream_error({"not-authorized"}, "a message after SASL but before bind")


# ---------------------------------------------------------------------------------------------
# SASL rows


def _retry_succeeds(s: RawStream, me: str, pw: str, features: str) -> None:
    """RFC 6120 §6.4.5: after a failure the stream stays open for another attempt."""
    s.authenticate(me, pw, features)
    s.buf = ""
    s.open_stream()
    s.bind()


def _sasl_mechanism_not_offered(h: Hostile, src: str) -> None:
    me, pw = h.user("digest")
    with h.raw(src) as s:
        features = s.starttls()
        assert "DIGEST-MD5" not in features, features
        s.send(f"<auth xmlns='{SASL_NS}' mechanism='DIGEST-MD5'/>")
        s.expect_sasl_failure("invalid-mechanism", "<auth mechanism='DIGEST-MD5'/>")
        _retry_succeeds(s, me, pw, features)


def _sasl_malformed_base64(h: Hostile, src: str) -> None:
    me, pw = h.user("b64")
    with h.raw(src) as s:
        features = s.starttls()
        s.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>!!not*base64</auth>")
        s.expect_sasl_failure("incorrect-encoding", "an <auth/> that is not base64")
        s.scram_start("SCRAM-SHA-256", me.split("@")[0])
        s.send(f"<response xmlns='{SASL_NS}'>%%%%</response>")
        s.expect_sasl_failure("incorrect-encoding", "a <response/> that is not base64")
        _retry_succeeds(s, me, pw, features)


def _wrong_scram(s: RawStream, local: str, password: str, what: str) -> float:
    """One SCRAM-SHA-256 attempt with a wrong password; returns how long it took."""
    t = time.monotonic()
    first_bare, server_first = s.scram_start("SCRAM-SHA-256", local)
    s.sasl_response(scram_client_final("sha256", password, first_bare, server_first))
    s.expect_sasl_failure("not-authorized", what)
    return time.monotonic() - t


def _sasl_brute_force(h: Hostile, src: str) -> None:
    me, pw = h.user("brute")
    local = me.split("@")[0]
    conns = 3
    for conn in range(1, conns + 1):
        with h.raw(src) as s:
            s.starttls()
            took = [_wrong_scram(s, local, f"guess-{conn}-{i}", f"wrong password {i + 1}")
                    for i in range(MAX_AUTH_FAILURES)]
            s.expect_stream_error({"policy-violation"},
                                  f"{MAX_AUTH_FAILURES} wrong passwords on one connection")
        # Slowed: after the n-th failure nothing is read for n × FAILURE_PAUSE; bounded.
        for n in range(1, MAX_AUTH_FAILURES):
            assert n * FAILURE_PAUSE - 0.1 <= took[n] <= n * FAILURE_PAUSE + SLACK, (
                f"connection {conn}: attempt {n + 1} took {took[n]:.2f}s, expected the "
                f"server to wait {n * FAILURE_PAUSE:.1f}s after failure {n}: {took}")
    failures = conns * MAX_AUTH_FAILURES
    assert failures > FREE_FAILURES
    delay = min(2.0 ** (failures - FREE_FAILURES), MAX_DELAY)
    # A new connection from the same address is heard only after the delay ...
    with h.raw(src, timeout=MAX_DELAY + SLACK) as s:
        t = time.monotonic()
        features = s.starttls()
        waited = time.monotonic() - t
        assert delay - 0.2 <= waited <= delay + SLACK, (
            f"after {failures} failures a new connection waited {waited:.2f}s, "
            f"expected {delay:.0f}s")
        # ... and then the right password still works.
        _retry_succeeds(s, me, pw, features)
    # Another address is not slowed down.
    with h.raw(h.source(250)) as s:
        t = time.monotonic()
        s.open_stream()
        assert time.monotonic() - t < delay / 2, "another client address was slowed down too"


def _scram_nonce_replay(h: Hostile, src: str) -> None:
    me, pw = h.user("replay")
    local = me.split("@")[0]
    cnonce = base64.b64encode(os.urandom(18)).decode()
    with h.raw(src) as s:
        s.starttls()
        first_bare, server_first = s.scram_start("SCRAM-SHA-256", local, cnonce)
        captured = scram_client_final("sha256", pw, first_bare, server_first)
        s.sasl_response(captured)
        s.sasl_outcome()
    with h.raw(src) as s:
        s.starttls()
        _, fresh = s.scram_start("SCRAM-SHA-256", local, cnonce)
        assert fresh != server_first, "the server reused its nonce for the same client nonce"
        s.sasl_response(captured)
        s.expect_sasl_failure("not-authorized", "a replayed client-final-message")
        # A proof computed for a nonce the server did not issue.
        first_bare, server_first = s.scram_start("SCRAM-SHA-256", local, cnonce)
        forged = re.sub(r"^r=[^,]*", f"r={cnonce}forged-server-part", server_first)
        s.sasl_response(scram_client_final("sha256", pw, first_bare, forged))
        s.expect_sasl_failure("not-authorized", "a client-final-message with a foreign nonce")


# ---------------------------------------------------------------------------------------------
# Addresses


def _oversized_jid_parts(h: Hostile, src: str) -> None:
    me, pw = h.user("longjid")
    domain = h.cluster.domain
    long_domain = ("d" * 60 + ".") * 17 + "test"
    cases = {
        "local-1024": f"{'a' * (MAX_PART + 1)}@{domain}",
        "domain-1041": f"a@{long_domain}",
        "resource-1024": f"{me}/{'r' * (MAX_PART + 1)}",
    }
    with h.raw(src) as s:
        s.login(me, pw)
        for sid, to in cases.items():
            s.send(f"<message to='{to}' id='{sid}' type='chat'><body>x</body></message>")
            s.expect_stanza_error(sid, "modify", "jid-malformed", f"a `to` with a {sid} part")
        # 1023 bytes is a valid localpart: the address is fine, the user does not exist.
        s.send(f"<message to='{'a' * MAX_PART}@{domain}' id='local-1023' type='chat'>"
               "<body>x</body></message>")
        s.expect_stanza_error("local-1023", "cancel", "service-unavailable",
                              "a message to a 1023-byte localpart nobody has")


def _bind_oversized_resource(h: Hostile, src: str) -> None:
    me, pw = h.user("longres")
    with h.raw(src) as s:
        s.authenticate(me, pw, s.starttls())
        s.buf = ""
        s.open_stream()
        s.send(f"<iq type='set' id='bind-long'><bind xmlns='{BIND_NS}'>"
               f"<resource>{'r' * (MAX_PART + 1)}</resource></bind></iq>")
        s.expect_stanza_error("bind-long", "modify", "bad-request",
                              "binding a 1024-byte resource (RFC 6120 §7.7.2.2)")
        assert s.bind("short").endswith("/short")


def _jid_forbidden_characters(h: Hostile, src: str) -> None:
    me, pw = h.user("badchars")
    domain = h.cluster.domain
    cases = {  # RFC 7622 §3.3.1 forbids "&'/:<>@ in a localpart; no part has spaces.
        "lt": f"us&lt;er@{domain}",
        "quot": f"us&quot;er@{domain}",
        "colon": f"us:er@{domain}",
        "space": f"us er@{domain}",
        "two-ats": f"a@b@{domain}",
        "domain-bang": "user@exa!mple.test",
    }
    with h.raw(src) as s:
        s.login(me, pw)
        for sid, to in cases.items():
            s.send(f"<message to='{to}' id='{sid}' type='chat'><body>x</body></message>")
            s.expect_stanza_error(sid, "modify", "jid-malformed", f"a `to` of {to!r}")


def _spoofed_from(h: Hostile, src: str) -> None:
    sender, spw = h.user("spoofer")
    target, tpw = h.user("target")
    impersonated = f"ceo@{h.cluster.domain}/desk"
    with h.raw(src) as s, h.raw(src) as r:
        rfull = r.login(target, tpw, "recv")
        sfull = s.login(sender, spw, "send")
        s.send(f"<message to='{rfull}' from='{impersonated}' id='spoof-msg' type='chat'>"
               "<body>wire the money</body></message>")
        got = r.read_stanza("spoof-msg", "the message with a spoofed from")
        assert got.get("from") == sfull, (
            f"RFC 6120 §8.1.2.1: the receiver must see the sender's real JID {sfull}, "
            f"got from={got.get('from')!r}")
        s.send(f"<iq to='{rfull}' from='{impersonated}' id='spoof-iq' type='get'>"
               "<query xmlns='urn:example:spoof'/></iq>")
        got = r.read_stanza("spoof-iq", "the iq with a spoofed from")
        assert got.get("from") == sfull, f"iq delivered with from={got.get('from')!r}"


# ---------------------------------------------------------------------------------------------
# IQ semantics (RFC 6120 §8.2.3)


def _iq_without_id(h: Hostile, src: str) -> None:
    me, pw = h.user("noid")
    with h.raw(src) as s:
        s.login(me, pw)
        s.send("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        s.expect_stanza_error(None, "modify", "bad-request", "a roster get without an id")


def _iq_unknown_namespace(h: Hostile, src: str) -> None:
    me, pw = h.user("unknownns")
    with h.raw(src) as s:
        s.login(me, pw)
        for sid, to, typ in (("to-server", h.cluster.domain, "get"),
                             ("to-server-set", h.cluster.domain, "set"),
                             ("to-account", me, "get")):
            s.send(f"<iq to='{to}' id='{sid}' type='{typ}'>"
                   "<query xmlns='urn:example:unknown'/></iq>")
            s.expect_stanza_error(sid, "cancel", "service-unavailable",
                                  f"an iq {typ} in an unknown namespace to {to}")


def _iq_set_two_children(h: Hostile, src: str) -> None:
    me, pw = h.user("twokids")
    domain = h.cluster.domain
    with h.raw(src) as s:
        s.login(me, pw)
        s.send("<iq type='set' id='two'>"
               f"<query xmlns='jabber:iq:roster'><item jid='x@{domain}'/></query>"
               f"<query xmlns='jabber:iq:roster'><item jid='y@{domain}'/></query></iq>")
        s.expect_stanza_error("two", "modify", "bad-request", "an iq set with two payloads")
        s.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        roster = s.read_stanza("roster", "the roster after the refused set")
        assert not list(roster.iter("{jabber:iq:roster}item")), "half of the set was applied"


# ---------------------------------------------------------------------------------------------
# Floods and per-user limits


def _shared_mailbox_drops(h: Hostile) -> dict[str, float]:
    """herald_mailbox_drops_total of the mailboxes all sessions share (the registry), by node.
    The flooder's own user and session mailboxes do overflow today: see README."""
    out: dict[str, float] = {}
    for n in h.cluster.nodes:
        code, text = h.cluster.http_get(n, "/metrics")
        assert code == 200, text
        for m in re.finditer(r'^herald_mailbox_drops_total\{mailbox="(\w+)"\} (\S+)$', text,
                             re.M):
            if m.group(1) not in ("user", "session", "socket"):
                out[f"node {n} {m.group(1)}"] = float(m.group(2))
    return out


def _presence_flood(h: Hostile, src: str) -> None:
    """What holds today without a per-session rate limit: others are not slowed or dropped.
    (What the flooder itself should get, delay then `policy-violation`, does not exist yet.)"""
    flooder, fpw = h.user("flooder")
    a, apw = h.user("calm-a")
    b, bpw = h.user("calm-b")
    drops_before = _shared_mailbox_drops(h)
    count = 20_000
    with h.raw(src) as f, h.raw(src) as ca, h.raw(src) as cb:
        f.login(flooder, fpw)
        ca.login(a, apw, "a")
        b_full = cb.login(b, bpw, "b")
        flood = b"".join(b"<presence><status>%d</status></presence>" % i for i in range(count))
        f.send_tolerant(flood)
        # While the node works through the flood, another pair's messages get through.
        for i in range(5):
            ca.send(f"<message to='{b_full}' type='chat' id='calm-{i}'><body>{i}</body>"
                    "</message>")
        for i in range(5):
            cb.read_stanza(f"calm-{i}", "a message sent during another client's flood",
                           timeout=SLACK)
    drops = _shared_mailbox_drops(h)
    assert drops == drops_before, f"stanzas dropped on a shared mailbox: {drops_before} → {drops}"


def _iq(s: RawStream, sid: str, typ: str, payload: str) -> None:
    s.send(f"<iq type='{typ}' id='{sid}'>{payload}</iq>")


def _expect_result(s: RawStream, sid: str, what: str) -> None:
    reply = s.read_stanza(sid, what)
    assert reply.get("type") == "result", f"{what}: {stanza_error(reply)}"


def _roster_flood(h: Hostile, src: str) -> None:
    me, pw = h.user("roster")
    domain = h.cluster.domain
    item = "<query xmlns='jabber:iq:roster'><item jid='c{}@" + domain + "'/></query>"
    with h.raw(src) as s:
        s.login(me, pw)
        for i in range(ROSTER_MAX):
            _iq(s, f"r{i}", "set", item.format(i))
            _expect_result(s, f"r{i}", f"roster item {i + 1} of {ROSTER_MAX}")
        _iq(s, "r-over", "set", item.format(ROSTER_MAX))
        s.expect_stanza_error("r-over", "wait", "resource-constraint",
                              f"roster item {ROSTER_MAX + 1} (roster_max {ROSTER_MAX})")
        _iq(s, "get", "get", "<query xmlns='jabber:iq:roster'/>")
        items = list(s.read_stanza("get", "the roster").iter("{jabber:iq:roster}item"))
        assert len(items) == ROSTER_MAX, [i.get("jid") for i in items]


def _blocklist_flood(h: Hostile, src: str) -> None:
    me, pw = h.user("blocker")
    domain = h.cluster.domain

    def block(sid: str, jids: list[str]) -> None:
        items = "".join(f"<item jid='{j}@{domain}'/>" for j in jids)
        _iq(s, sid, "set", f"<block xmlns='urn:xmpp:blocking'>{items}</block>")
    with h.raw(src) as s:
        s.login(me, pw)
        block("b-many", [f"m{i}" for i in range(BLOCKED_MAX + 1)])
        s.expect_stanza_error("b-many", "wait", "resource-constraint",
                              f"one block of {BLOCKED_MAX + 1} (blocked_max {BLOCKED_MAX})")
        for i in range(BLOCKED_MAX):
            block(f"b{i}", [f"x{i}"])
            _expect_result(s, f"b{i}", f"block {i + 1} of {BLOCKED_MAX}")
        block("b-over", ["one-more"])
        s.expect_stanza_error("b-over", "wait", "resource-constraint",
                              f"block {BLOCKED_MAX + 1} (blocked_max {BLOCKED_MAX})")
        _iq(s, "list", "get", "<blocklist xmlns='urn:xmpp:blocking'/>")
        items = list(s.read_stanza("list", "the block list").iter("{urn:xmpp:blocking}item"))
        assert sorted(i.get("jid", "") for i in items) == sorted(
            f"x{i}@{domain}" for i in range(BLOCKED_MAX)), [i.get("jid") for i in items]


def _offline_flood(h: Hostile, src: str) -> None:
    sender, spw = h.user("offline-sender")
    absent, apw = h.user("offline-absent")
    with h.raw(src) as s:
        s.login(sender, spw)
        for i in range(OFFLINE_MAX + 1):
            s.send(f"<message to='{absent}' type='chat' id='off-{i}'><body>{i}</body></message>")
        s.expect_stanza_error(f"off-{OFFLINE_MAX}", "cancel", "service-unavailable",
                              f"message {OFFLINE_MAX + 1} to an offline user "
                              f"(offline_max {OFFLINE_MAX})")
        assert "type='error'" not in s.skipped, f"a stored message bounced: {s.skipped}"
    with h.raw(src) as r:
        r.login(absent, apw)
        r.send("<presence/>")
        for i in range(OFFLINE_MAX):
            m = r.read_stanza(f"off-{i}", f"stored message {i + 1} of {OFFLINE_MAX}")
            assert m.find("{urn:xmpp:delay}delay") is not None, f"off-{i} has no <delay/>"
        _iq(r, "sync", "get", "<ping xmlns='urn:xmpp:ping'/>")
        r.read_stanza("sync", "a ping after the stored messages")
        assert f"off-{OFFLINE_MAX}" not in r.skipped, "the refused message was stored anyway"


# ---------------------------------------------------------------------------------------------
# Slowloris (connections opened by the fixture; see SLOW_PROBES)


def _slow_check(h: Hostile, name: str) -> tuple[float, bytes]:
    bound = SLOW_PROBES[name][2]
    end, after, data = h.slow[name].wait(bound + SLACK)
    assert end == "eof", f"{name}: the connection ended by {end!r} after {after:.0f}s: {data!r}"
    assert bound - 1.0 <= after <= bound + SLACK, (
        f"{name}: closed after {after:.1f}s, the bound is {bound:.0f}s")
    return after, data


def _slowloris_c2s(h: Hostile, src: str) -> None:
    _, data = _slow_check(h, "c2s")
    m = re.search(r"<stream:error>\s*<([\w-]+)", data.decode(errors="replace"))
    assert m and m.group(1) == "connection-timeout", (
        f"expected a <connection-timeout/> stream error, got {data[-400:]!r}")


def _slowloris_direct_tls(h: Hostile, src: str) -> None:
    _, data = _slow_check(h, "direct-tls")
    assert data == b"", f"the server sent bytes to a client that never said hello: {data!r}"


def _slowloris_silent(name: str) -> Callable[[Hostile, str], None]:
    """A listener that must close a connection that stops halfway through its first request;
    an HTTP/2 server may have sent its own preface (a SETTINGS frame), nothing else."""
    def check(h: Hostile, src: str) -> None:
        _, data = _slow_check(h, name)
        if SLOW_PROBES[name][1].startswith(b"PRI "):
            # Frame header: 3 bytes length, type 4 (SETTINGS), flags, stream 0.
            assert data[3:4] == b"\x04" and len(data) == 9 + int.from_bytes(data[:3], "big"), (
                f"{name}: more than the server's SETTINGS frame: {data!r}")
        else:
            assert data == b"", f"{name}: the server sent bytes to a silent client: {data!r}"
    return check


def _tls_garbage(h: Hostile, src: str) -> None:
    """Bytes that are not a TLS record on the direct-TLS port: a fatal `decode_error` alert
    (RFC 8446 §6.2), then the connection closes."""
    with socket.create_connection((h.cluster.ip(NODE), C2S_TLS_PORT), timeout=10,
                                  source_address=(src, 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError(f"the connection stayed open after garbage: {data!r}")
    # Alert record: type 21, 2-byte version, length 2, level fatal (2), decode_error (50).
    assert len(data) == 7 and data[0] == 21 and data[3:6] == b"\x00\x02\x02", (
        f"expected one fatal alert record, got {data!r}")
    assert data[6] == 50, f"expected decode_error (50), got alert {data[6]}"


def _iq_unknown_type(h: Hostile, src: str) -> None:
    me, pw = h.user("iqtype")
    other, _ = h.user("iqtypeother")
    with h.raw(src) as s:
        s.login(me, pw)
        for sid, to in (("to-server", h.cluster.domain), ("to-self", me), ("to-other", other)):
            s.send(f"<iq to='{to}' id='{sid}' type='frobnicate'>"
                   "<query xmlns='jabber:iq:version'/></iq>")
            s.expect_stanza_error(sid, "modify", "bad-request",
                                  f"an iq of an unknown type to {to}")
        s.send("<iq type='get' id='after'><query xmlns='jabber:iq:roster'/></iq>")
        s.read_stanza("after", "the roster after the refused iqs")


# ---------------------------------------------------------------------------------------------
# Admin API and node-to-node API


def _expect_unauthenticated(out: subprocess.CompletedProcess, what: str) -> None:
    assert out.returncode != 0 and "UNAUTHENTICATED" in out.stderr, (
        f"{what}: exit {out.returncode}, stderr {out.stderr!r}")


def _admin_without_token(h: Hostile, src: str) -> None:
    _expect_unauthenticated(h.cluster.cli_raw(NODE, "domain", "list", token=None),
                            "`herald domain list` without a token")
    assert h.cluster.cli_raw(NODE, "domain", "list").returncode == 0, "the right token failed"


def _grpc_code(channel: grpc.Channel, method: str, md: Optional[list[tuple[str, str]]],
               stream: bool = False) -> grpc.StatusCode:
    ident = lambda b: b  # noqa: E731 - raw bytes in and out: an empty message is valid protobuf
    try:
        if stream:
            channel.stream_unary(method, request_serializer=ident,
                                 response_deserializer=ident)(iter([b""]), timeout=10,
                                                               metadata=md)
        else:
            channel.unary_unary(method, request_serializer=ident,
                                response_deserializer=ident)(b"", timeout=10, metadata=md)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _admin_wrong_token(h: Hostile, src: str) -> None:
    _expect_unauthenticated(h.cluster.cli_raw(NODE, "domain", "list", token="tok-987654321"),
                            "`herald domain list` with a wrong token")
    with grpc.insecure_channel(f"{h.cluster.ip(NODE)}:{ADMIN_PORT}") as ch:
        for value in (ADMIN_TOKEN, f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}"):
            code = _grpc_code(ch, ADMIN_API + "ClusterStatus", [("authorization", value)])
            assert code == grpc.StatusCode.UNAUTHENTICATED, f"authorization {value!r}: {code}"
        code = _grpc_code(ch, ADMIN_API + "ClusterStatus",
                          [("authorization", f"Bearer {ADMIN_TOKEN}")])
        assert code == grpc.StatusCode.OK, f"the right token: {code}"


def _admin_token_not_a_header_value(h: Hostile, src: str) -> None:
    """A token that cannot be sent as a header would silently turn authentication off if it
    were accepted: the node must refuse to start."""
    for i, token in enumerate(("tok-é-123456789", "tok 123456789")):
        bad = Cluster(h.cluster.dir.parent / f"bad-token-{i}", admin_token=token)
        try:
            bad.start(1)
            wait_until(lambda: bad.procs[1].poll() is not None, 20.0,
                       f"a node started with admin token {token!r} to exit")
            code = bad.procs[1].returncode
            log = bad.log_path(1).read_text(errors="replace")
            assert code != 0 and "invalid `admin_token`" in log, (
                f"admin token {token!r}: exit {code}, log:\n{log[-800:]}")
        except HarnessError as exc:
            raise AssertionError(f"{exc}\n{bad.log_tail(1)}") from None
        finally:
            bad.stop()


def _cluster_call_without_token(h: Hostile, src: str) -> None:
    with grpc.insecure_channel(f"{h.cluster.ip(NODE)}:{CLUSTER_PORT}") as ch:
        for md in (None, [(TOKEN_HEADER, "wrong-token")], [(TOKEN_HEADER, "")]):
            for name in UNARY_NODE_CALLS:
                code = _grpc_code(ch, NODE_API + name, md)
                assert code == grpc.StatusCode.UNAUTHENTICATED, f"{name} with {md}: {code}"
            for name in ("Raft", "Route"):
                code = _grpc_code(ch, NODE_API + name, md, stream=True)
                assert code == grpc.StatusCode.UNAUTHENTICATED, f"{name} with {md}: {code}"
        code = _grpc_code(ch, NODE_API + "Status", [(TOKEN_HEADER, CLUSTER_TOKEN)])
        assert code == grpc.StatusCode.OK, f"Status with the right token: {code}"


# ---------------------------------------------------------------------------------------------

#: Row id → what it does. Order matters only for speed: the slowloris rows come last, when
#: most of their wait has passed.
CASES: dict[str, Callable[[Hostile, str], None]] = {
    "external-entity": _external_entity,
    "doctype": _doctype,
    "deep-nesting": _deep_nesting,
    "nul-byte": _nul_byte,
    "stanza-before-bind": _stanza_before_bind,
    "sasl-mechanism-not-offered": _sasl_mechanism_not_offered,
    "sasl-malformed-base64": _sasl_malformed_base64,
    "sasl-brute-force": _sasl_brute_force,
    "scram-nonce-replay": _scram_nonce_replay,
    "oversized-jid-parts": _oversized_jid_parts,
    "bind-oversized-resource": _bind_oversized_resource,
    "jid-forbidden-characters": _jid_forbidden_characters,
    "spoofed-from": _spoofed_from,
    "iq-without-id": _iq_without_id,
    "iq-unknown-namespace": _iq_unknown_namespace,
    "iq-set-two-children": _iq_set_two_children,
    "iq-unknown-type": _iq_unknown_type,
    "tls-garbage-direct-tls": _tls_garbage,
    "presence-flood": _presence_flood,
    "roster-flood": _roster_flood,
    "blocklist-flood": _blocklist_flood,
    "offline-flood": _offline_flood,
    "admin-without-token": _admin_without_token,
    "admin-wrong-token": _admin_wrong_token,
    "admin-token-not-a-header-value": _admin_token_not_a_header_value,
    "cluster-call-without-token": _cluster_call_without_token,
    "slowloris-c2s": _slowloris_c2s,
    "slowloris-direct-tls": _slowloris_direct_tls,
    "slowloris-http": _slowloris_silent("http"),
    "slowloris-admin": _slowloris_silent("admin"),
    "slowloris-cluster": _slowloris_silent("cluster"),
}

#: The slowloris connections: (port, what they send before going silent, seconds until the
#: node must close them).
SLOW_PROBES = {
    "c2s": (C2S_PORT, stream_header().split(b" to=")[0], NEGOTIATION_TIMEOUT),
    "direct-tls": (C2S_TLS_PORT, b"", NEGOTIATION_TIMEOUT),
    # Half a request line; HTTP_IDLE in node/src/idle.rs.
    "http": (HTTP_PORT, b"GET /metr", 30.0),
    # The HTTP/2 preface cut short; GRPC_IDLE in node/src/idle.rs.
    "admin": (ADMIN_PORT, b"PRI * HTTP/2.0\r\n", 60.0),
    "cluster": (CLUSTER_PORT, b"PRI * HTTP/2.0\r\n", 60.0),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    base = tmp_path_factory.mktemp("hostile")
    limits = base / "herald.toml"
    limits.write_text(f"[xmpp]\nmax_depth = {MAX_DEPTH}\nroster_max = {ROSTER_MAX}\n"
                      f"blocked_max = {BLOCKED_MAX}\noffline_max = {OFFLINE_MAX}\n")
    c = Cluster(base / "cluster", admin_token=ADMIN_TOKEN,
                extra_args=["--config", str(limits), "--cluster-token", CLUSTER_TOKEN])
    h: Optional[Hostile] = None
    try:
        c.start_cluster(3)
        h = Hostile(c, ("", ""), ("", ""))
        h.alice, h.bob = h.user("alice"), h.user("bob")
        for i, (name, (port, prefix, bound)) in enumerate(SLOW_PROBES.items()):
            h.slow[name] = SlowConn(c.ip(NODE), port, h.source(240 + i), prefix,
                                    bound + 2 * SLACK)
        yield h
    finally:
        for conn in (h.slow.values() if h else ()):
            conn.close()
        c.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_gets_the_prescribed_answer_and_others_are_unaffected(
        hostile: Hostile, case: str) -> None:
    src = hostile.source(100 + list(CASES).index(case))
    try:
        CASES[case](hostile, src)
    except RawError as exc:
        raise AssertionError(f"{case}: {exc}") from None
    assert hostile.cluster.is_running(NODE), f"node {NODE} died after {case}"
    assert_pair_chats(hostile.cluster, NODE, hostile.alice, hostile.bob,
                      f"still serving after {case}")
