"""A raw-socket XMPP client for inputs slixmpp cannot send (bad XML, bad bytes, huge stanzas).

Blocking sockets with timeouts: every read is bounded. It speaks just enough c2s to get where
the bad input goes: stream header, STARTTLS, SASL (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, by
what the server offers), resource binding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from harness import C2S_PORT, DOMAIN

STREAM_NS = "http://etherx.jabber.org/streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

READ_TIMEOUT = 10.0


def stream_header(domain: str = DOMAIN, prolog: str = "") -> bytes:
    """A client stream header; `prolog` goes between the XML declaration and the header (a
    DOCTYPE, say)."""
    return (f"<?xml version='1.0'?>{prolog}<stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{STREAM_NS}' to='{domain}' version='1.0'>").encode()


class RawError(AssertionError):
    """The server did not answer as the protocol says; the message holds what it sent."""


_STREAM_ERROR = re.compile(
    r"<(?:stream:error|error\s+xmlns=['\"]http://etherx\.jabber\.org/streams['\"])[^>]*>"
    r"(.*?)</(?:stream:)?error>", re.S)
_CHILD = re.compile(r"<([A-Za-z][\w.-]*)[\s/>]")
_SASL_FAILURE = r"<failure\b[^>]*>(.*?)</failure>|<failure\b[^>]*/>"


def stanza_error(stanza: ET.Element) -> tuple[Optional[str], list[str]]:
    """The `type` and the defined conditions (RFC 6120 §8.3) of an error stanza's `<error/>`
    (None and [] when it has none)."""
    err = stanza.find("error")
    if err is None:
        return None, []
    prefix = f"{{{STANZAS_NS}}}"
    conds = [c.tag[len(prefix):] for c in err if c.tag.startswith(prefix)]
    return err.get("type"), [c for c in conds if c != "text"]


def scram_client_final(algo: str, password: str, client_first_bare: str,
                       server_first: str) -> str:
    """The SCRAM client-final-message (RFC 5802 section 3) for hash `algo`, without channel
    binding (gs2 header "n,,")."""
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored_key = hashlib.new(algo, client_key).digest()
    final_wo_proof = f"c=biws,r={attrs['r']}"
    auth_msg = f"{client_first_bare},{server_first},{final_wo_proof}".encode()
    sig = hmac.new(stored_key, auth_msg, algo).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    return f"{final_wo_proof},p={base64.b64encode(proof).decode()}"


class RawStream:
    """One TCP (then TLS) connection to a node's c2s port."""

    def __init__(self, host: str, port: int = C2S_PORT, *, ca: Optional[Path] = None,
                 domain: str = DOMAIN, timeout: float = READ_TIMEOUT,
                 source: Optional[str] = None) -> None:
        """`source`: the local IP to connect from (another 127.x address keeps what the server
        counts per client address, such as failed logins, apart from other clients)."""
        self.host, self.port, self.ca, self.domain, self.timeout = host, port, ca, domain, timeout
        try:
            self.sock: socket.socket = socket.create_connection(
                (host, port), timeout=timeout,
                source_address=(source, 0) if source else None)
        except OSError as exc:
            raise RawError(f"cannot connect to {host}:{port}: {exc}") from None
        self.buf = ""
        #: What the last `read_until` skipped before its match.
        self.skipped = ""
        self.eof = False
        self.log: list[str] = []

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- I/O ---------------------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        """Writes `data` (a closed connection surfaces later as EOF, not here)."""
        if isinstance(data, str):
            data = data.encode()
        self.log.append(f"C: {data[:200]!r}{'...' if len(data) > 200 else ''}")
        self.sock.sendall(data)

    def send_tolerant(self, data: bytes, chunk: int = 16384) -> int:
        """Writes `data` in chunks and stops quietly when the server closes the connection
        (it may do so mid-way, e.g. for an oversized stanza). Returns the bytes written."""
        sent = 0
        self.log.append(f"C: <{len(data)} bytes, sent in chunks>")
        try:
            while sent < len(data):
                self.sock.sendall(data[sent:sent + chunk])
                sent += min(chunk, len(data) - sent)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            pass
        return sent

    def _recv(self, deadline: float) -> bool:
        """Reads what is available before `deadline`; False on timeout, sets `eof` on close."""
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.eof = True
            self.log.append("S: <connection reset>")
            return True
        except ssl.SSLError as exc:
            self.eof = True
            self.log.append(f"S: <TLS error {exc}>")
            return True
        if not data:
            self.eof = True
            self.log.append("S: <EOF>")
            return True
        text = data.decode("utf-8", errors="replace")
        self.log.append(f"S: {text[:300]}")
        self.buf += text
        return True

    def read_until(self, pattern: str, what: str, timeout: Optional[float] = None) -> re.Match:
        """Reads until `pattern` (regex, DOTALL) matches the unread buffer; consumes through the
        match. Raises RawError naming `what` and what the server sent."""
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = rx.search(self.buf)
            if m:
                self.skipped = self.buf[:m.start()]
                self.buf = self.buf[m.end():]
                return m
            if self.eof or time.monotonic() >= deadline:
                state = "the connection closed" if self.eof else "timed out"
                raise RawError(f"{self.host}:{self.port}: expected {what}, but {state}; "
                               f"unread: {self.buf[-800:]!r}\n  transcript:\n    "
                               + "\n    ".join(self.log[-12:]))
            self._recv(deadline)

    def read_features(self) -> str:
        """Reads the server's stream header and stream features; returns the features XML."""
        self.read_until(r"<stream:stream\b[^>]*>", "the server's stream header")
        m = self.read_until(r"<stream:features\s*/>|<stream:features\b.*?</stream:features>",
                            "stream features")
        return m.group(0)

    # -- protocol steps ----------------------------------------------------------------------

    def open_stream(self) -> str:
        """Sends a stream header, returns the server's features."""
        self.send(stream_header(self.domain))
        return self.read_features()

    def starttls(self) -> str:
        """Opens the stream, upgrades with STARTTLS trusting `ca`, reopens; returns the
        features offered on the encrypted stream."""
        features = self.open_stream()
        if TLS_NS not in features:
            raise RawError(f"{self.host}:{self.port}: STARTTLS not offered: {features}")
        self.send(f"<starttls xmlns='{TLS_NS}'/>")
        self.read_until(r"<proceed\b[^>]*/>|<proceed\b[^>]*>\s*</proceed>", "<proceed/>")
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        self.sock.settimeout(self.timeout)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.domain)
        except (ssl.SSLError, OSError) as exc:
            raise RawError(f"{self.host}:{self.port}: TLS handshake failed: {exc}") from None
        self.buf = ""
        return self.open_stream()

    def authenticate(self, jid: str, password: str, features: str) -> None:
        """SASL with the best offered mechanism among SCRAM-SHA-256, SCRAM-SHA-1, PLAIN."""
        mechs = re.findall(r"<mechanism>\s*([^<\s]+)\s*</mechanism>", features)
        user = jid.split("@", 1)[0]
        for mech, algo in (("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-1", "sha1")):
            if mech in mechs:
                self._scram(mech, algo, user, password)
                return
        if "PLAIN" in mechs:
            raw = f"\0{user}\0{password}".encode()
            self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>"
                      f"{base64.b64encode(raw).decode()}</auth>")
            self.sasl_outcome()
            return
        raise RawError(f"no usable SASL mechanism offered: {mechs} in {features}")

    def sasl_outcome(self) -> str:
        """Waits for `<success/>` (returns its data) or `<failure/>` (raises RawError)."""
        m = self.read_until(r"<success\b[^>]*/>|<success\b[^>]*>(.*?)</success>"
                            r"|<failure\b.*?(?:/>|</failure>)", "SASL <success/> or <failure/>")
        if m.group(0).startswith("<failure"):
            raise RawError(f"SASL failed: {m.group(0)}")
        return m.group(1) or ""

    def scram_start(self, mech: str, user: str,
                    cnonce: Optional[str] = None) -> tuple[str, str]:
        """Sends `<auth/>` with the SCRAM client-first message for `user` (client nonce
        `cnonce`, random if None); returns (client-first-message-bare, server-first-message)."""
        cnonce = cnonce or base64.b64encode(os.urandom(18)).decode()
        name = user.replace("=", "=3D").replace(",", "=2C")
        first_bare = f"n={name},r={cnonce}"
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='{mech}'>"
                  f"{base64.b64encode(('n,,' + first_bare).encode()).decode()}</auth>")
        m = self.read_until(r"<challenge\b[^>]*>(.*?)</challenge>|<failure\b.*?(?:/>|</failure>)",
                            "SCRAM server-first <challenge/>")
        if m.group(0).startswith("<failure"):
            raise RawError(f"SASL failed at client-first: {m.group(0)}")
        server_first = base64.b64decode(m.group(1).strip()).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        if not attrs.get("r", "").startswith(cnonce):
            raise RawError(f"SCRAM server nonce does not extend ours: {server_first}")
        return first_bare, server_first

    def sasl_response(self, data: str) -> None:
        """Sends `<response/>` carrying `data`, base64-encoded."""
        self.send(f"<response xmlns='{SASL_NS}'>{base64.b64encode(data.encode()).decode()}"
                  "</response>")

    def _scram(self, mech: str, algo: str, user: str, password: str) -> None:
        first_bare, server_first = self.scram_start(mech, user)
        self.sasl_response(scram_client_final(algo, password, first_bare, server_first))
        self.sasl_outcome()

    def bind(self, resource: str = "raw") -> str:
        """Binds a resource on the (already restarted) stream; returns the full JID."""
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>"
                  f"<resource>{resource}</resource></bind></iq>")
        m = self.read_until(r"<jid>([^<]+)</jid>|<iq\b[^>]*type=['\"]error['\"].*?</iq>",
                            "the bind result")
        if m.group(1) is None:
            raise RawError(f"resource binding failed: {m.group(0)}")
        return m.group(1)

    def login(self, jid: str, password: str, resource: str = "raw") -> str:
        """STARTTLS, SASL, stream restart, bind: returns the full JID."""
        features = self.starttls()
        self.authenticate(jid, password, features)
        self.buf = ""
        self.open_stream()
        return self.bind(resource)

    # -- outcomes ----------------------------------------------------------------------------

    def expect_sasl_failure(self, condition: str, what: str,
                            timeout: Optional[float] = None) -> None:
        """Waits for `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` whose one condition
        is `condition` (RFC 6120 §6.5)."""
        m = self.read_until(_SASL_FAILURE, f"SASL <failure><{condition}/></failure> after {what}",
                            timeout)
        conds = [c for c in _CHILD.findall(m.group(1) or "") if c != "text"]
        if conds != [condition]:
            raise RawError(f"after {what}: expected SASL failure <{condition}/>, got "
                           f"{conds or 'no condition'}: {m.group(0)}")

    def read_stanza(self, stanza_id: Optional[str], what: str,
                    timeout: Optional[float] = None) -> ET.Element:
        """Reads until a top-level `<message/>`, `<presence/>` or `<iq/>` with this `id` (None:
        with no `id` at all) arrives, skipping others, and returns it parsed."""
        if stanza_id is None:
            has_id = r"(?![^>]*\bid=)"
        else:
            has_id = r"(?=[^>]*\bid=(?P<q>['\"])" + re.escape(stanza_id) + r"(?P=q))"
        rx = r"<(?P<name>message|presence|iq)\b" + has_id + r"[^>]*?(?:/>|>.*?</(?P=name)>)"
        m = self.read_until(rx, f"a stanza with id {stanza_id!r} ({what})", timeout)
        try:
            return ET.fromstring(m.group(0))
        except ET.ParseError as exc:
            raise RawError(f"{what}: the stanza does not parse ({exc}): {m.group(0)}") from None

    def expect_stanza_error(self, stanza_id: Optional[str], etype: str, condition: str, what: str,
                            timeout: Optional[float] = None) -> ET.Element:
        """Waits for the error reply to the stanza with this `id` and checks its `<error/>`
        type and defined condition (RFC 6120 §8.3). Returns the reply."""
        reply = self.read_stanza(stanza_id, f"the error reply to {what}", timeout)
        got = stanza_error(reply)
        if reply.get("type") != "error" or got != (etype, [condition]):
            raise RawError(f"after {what}: expected a stanza error type={etype} <{condition}/>,"
                           f" got type={reply.get('type')} error={got}: "
                           f"{ET.tostring(reply, encoding='unicode')[:600]}")
        return reply

    def expect_stream_error(self, allowed: set[str], what: str,
                            timeout: Optional[float] = None) -> str:
        """Waits for a stream error whose condition is in `allowed`, then for the server to close
        the connection (both bounded). Returns the condition."""
        m = self.read_until(_STREAM_ERROR.pattern, f"a stream error {sorted(allowed)} "
                            f"after {what}", timeout)
        conds = [c for c in _CHILD.findall(m.group(1)) if c != "text"]
        if not conds or conds[0] not in allowed:
            raise RawError(f"after {what}: expected stream error {sorted(allowed)}, got "
                           f"{conds or 'no condition'}: {m.group(0)}")
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof and time.monotonic() < deadline:
            self._recv(deadline)
        if not self.eof:
            raise RawError(f"after {what}: stream error <{conds[0]}/> was sent but the server "
                           f"did not close the connection within {timeout or self.timeout:.0f}s")
        return conds[0]
